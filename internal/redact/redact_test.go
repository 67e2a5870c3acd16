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
