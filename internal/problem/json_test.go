package problem

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type upper string

func (u *upper) UnmarshalText(b []byte) error {
	if strings.ToUpper(string(b)) != string(b) {
		return errors.New("must be upper case")
	}
	*u = upper(b)
	return nil
}

type inner struct {
	N    int      `json:"n"`
	Tags []string `json:"tags"`
}

type base struct {
	ID string `json:"id"`
}

type doc struct {
	base
	Name   string           `json:"name"`
	Code   upper            `json:"code"`
	Inner  *inner           `json:"inner"`
	List   []inner          `json:"list"`
	Extra  map[string]int   `json:"extra"`
	Flag   *bool            `json:"flag"`
	Skip   string           `json:"-"`
	Nested map[string]inner `json:"nested"`
}

func TestDecodeJSON(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		var v doc
		l := DecodeJSON([]byte(`{"id":"x","NAME":"n","code":"AB","inner":{"n":1,"tags":["a"]},"flag":false,"extra":{"a":1}}`), &v)
		require.Empty(t, l)
		assert.Equal(t, "x", v.ID)
		assert.Equal(t, "n", v.Name, "case-insensitive match like encoding/json")
		assert.Equal(t, upper("AB"), v.Code)
		require.NotNil(t, v.Inner)
		assert.Equal(t, []string{"a"}, v.Inner.Tags)
		require.NotNil(t, v.Flag)
		assert.False(t, *v.Flag)
		assert.Equal(t, map[string]int{"a": 1}, v.Extra)
	})
	t.Run("every problem with its path", func(t *testing.T) {
		var v doc
		l := DecodeJSON([]byte(`{
			"id": 7, "name": "ok", "code": "ab",
			"inner": {"n": "one", "tags": ["a", 2], "bogus": 1},
			"list": [{"n": 1}, {"n": 1.5}],
			"extra": {"a": "x"},
			"nested": {"k": {"n": true}},
			"flag": "yes",
			"typo": 1
		}`), &v)
		got := make([]string, len(l))
		for i, p := range l {
			got[i] = p.String()
		}
		assert.Equal(t, []string{
			"id: must be a string, got the number 7",
			"code: must be upper case",
			"inner.n: must be an integer, got a string",
			"inner.tags[1]: must be a string, got the number 2",
			"inner.bogus: unknown field",
			"list[1].n: must be an integer, got the number 1.5",
			"extra.a: must be an integer, got a string",
			"flag: must be true or false, got a string",
			"nested.k.n: must be an integer, got a boolean",
			"typo: unknown field",
		}, got)
		assert.Equal(t, "ok", v.Name, "good fields are still decoded")
		require.Error(t, l.Err())
	})
	t.Run("syntax error with line and column", func(t *testing.T) {
		var v doc
		l := DecodeJSON([]byte("{\n  \"name\": \"x\",\n  oops\n}"), &v)
		require.Len(t, l, 1)
		assert.Contains(t, l[0].Message, "line 3")
	})
	t.Run("empty", func(t *testing.T) {
		var v doc
		l := DecodeJSON([]byte("  "), &v)
		require.Len(t, l, 1)
		assert.Contains(t, l[0].Message, "empty document")
	})
	t.Run("not an object", func(t *testing.T) {
		var v doc
		l := DecodeJSON([]byte(`[1,2]`), &v)
		require.Len(t, l, 1)
		assert.Equal(t, "must be an object, got an array", l[0].Message)
	})
	t.Run("duplicate member names", func(t *testing.T) {
		// encoding/json keeps the last of two equal names; DecodeJSON refuses them at
		// any depth and names the path of the second one.
		for _, tc := range []struct{ name, doc, want string }{
			{"top level", `{"id":"a","name":"x","id":"b"}`, `id: duplicate member name "id"`},
			{"in a struct", `{"inner":{"n":1,"n":2}}`, `inner.n: duplicate member name "n"`},
			{"in an array element", `{"list":[{"n":1},{"n":1,"tags":[],"n":2}]}`, `list[1].n: duplicate member name "n"`},
			{"in a map", `{"extra":{"a":1,"a":1}}`, `extra.a: duplicate member name "a"`},
			{"in an unknown field", `{"typo":{"z":1,"z":2}}`, `typo.z: duplicate member name "z"`},
			{"written with an escape", `{"name":"x","n\u0061me":"y"}`, `name: duplicate member name "name"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var v doc
				l := DecodeJSON([]byte(tc.doc), &v)
				require.NotEmpty(t, l)
				assert.True(t, strings.HasPrefix(l[0].String(), tc.want), "got %q", l.Error())
			})
		}
		t.Run("other problems still listed", func(t *testing.T) {
			var v doc
			l := DecodeJSON([]byte(`{"id":"a","id":"b","flag":"yes"}`), &v)
			require.Len(t, l, 2)
			assert.Equal(t, "id", l[0].Path)
			assert.Equal(t, "flag", l[1].Path)
		})
		t.Run("names differing in case are not duplicates here", func(t *testing.T) {
			var v doc
			l := DecodeJSON([]byte(`{"extra":{"a":1,"A":2}}`), &v)
			require.Empty(t, l)
			assert.Equal(t, map[string]int{"a": 1, "A": 2}, v.Extra)
		})
	})
	t.Run("not a pointer", func(t *testing.T) {
		l := DecodeJSON([]byte(`{}`), doc{})
		require.Len(t, l, 1)
	})
}

func TestList(t *testing.T) {
	var l List
	require.NoError(t, l.Err())
	l.Addf("a", "bad %d", 1)
	var sub List
	sub.Addf("b", "worse")
	sub.Addf("", "whole")
	l.Merge("x", sub)
	assert.Equal(t, "a: bad 1; x.b: worse; x: whole", l.Error())
	assert.Equal(t, "x[2]", Index("x", 2))
	assert.Equal(t, "x[2].y", Join(Index("x", 2), "y"))
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"id":"x","inner":{"n":1,"tags":["a"]},"list":[{"n":2}]}`))
	f.Add([]byte(`{"id":1,"code":"ab"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var v doc
		l := DecodeJSON(data, &v)
		for _, p := range l {
			require.NotEmpty(t, p.Message)
		}
	})
}
