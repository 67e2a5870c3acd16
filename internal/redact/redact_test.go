package redact

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRedact(t *testing.T) {
	assert.Equal(t, "*********25", ID("52998224725"))
	assert.Equal(t, "****", ID("1234"))
	assert.Equal(t, "M**** d* S****", Name("Maria da Silva"))
	assert.Equal(t, "J*** P******", Name("João Pereira"))
	assert.Equal(t, "m****@e******.com", Email("maria@example.com"))
	assert.Equal(t, "[redacted]", Secret("s3cr3t"))
	assert.Equal(t, "", Secret(""))
}

func TestText(t *testing.T) {
	assert.Equal(t, "", Text(""))
	assert.Equal(t, "[redacted: 14 characters]", Text("Maria da Silva"))
	assert.Equal(t, "[redacted: 4 characters]", Text("João"), "counted in characters, not bytes")
}

func TestURL(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"user and password", "https://user:secretpw@api.example.com", "https://xxxxx@api.example.com"},
		{"user alone (a token)", "https://tok3n@api.example.com/v1", "https://xxxxx@api.example.com/v1"},
		{"no user information", "https://api.example.com:8443/x", "https://api.example.com:8443/x"},
		{"query values", "https://hooks.example.com/in?token=s3cr3t&x=1", "https://hooks.example.com/in?token=xxxxx&x=xxxxx"},
		{"a bare query value", "https://hooks.example.com/in?s3cr3t", "https://hooks.example.com/in?xxxxx"},
		{"etcd endpoint", "http://root:pw@10.0.0.1:2379", "http://xxxxx@10.0.0.1:2379"},
		{"no scheme (opaque)", "user:secretpw@api.example.com", "xxxxx@api.example.com"},
		{"unparsable", "https://user:pw@exa mple.com:x/%zz", "https://xxxxx@exa mple.com:x/%zz"},
		{"unparsable with a query", "ht tp://u:p@h/?k=%zz", "ht tp://xxxxx@h/?xxxxx"},
		{"empty", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := URL(tt.in)
			assert.Equal(t, tt.want, got)
			assert.NotContains(t, got, "secretpw")
			assert.NotContains(t, got, "s3cr3t")
		})
	}
	assert.Equal(t, "http://xxxxx@a:2379,http://b:2379", URLs([]string{"http://u:p@a:2379", "http://b:2379"}))
}
