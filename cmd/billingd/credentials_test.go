package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWithCredentials(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"klavi_access_key":     "ak-from-file\n",
		"klavi_secret_key":     "sk-from-file",
		"billingd_admin_token": "",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o400))
	}
	environ := map[string]string{
		"CREDENTIALS_DIRECTORY": dir,
		"KLAVI_SECRET_KEY":      "sk-from-env",
	}
	getenv := withCredentials(func(k string) string { return environ[k] })

	for _, tc := range []struct{ name, want string }{
		{"KLAVI_ACCESS_KEY", "ak-from-file"}, // file, trailing newline dropped
		{"KLAVI_SECRET_KEY", "sk-from-env"},  // the environment wins
		{"BILLINGD_ADMIN_TOKEN", ""},         // empty file: unset
		{"KLAVI_BASE_URL", ""},               // no such credential
		{"CREDENTIALS_DIRECTORY", dir},       // itself, from the environment
		{"../klavi_access_key", ""},          // never a path
		{"klavi_access_key", "ak-from-file"}, // lower case names the same file
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, getenv(tc.name))
		})
	}

	t.Run("no CREDENTIALS_DIRECTORY: the environment only", func(t *testing.T) {
		getenv := withCredentials(func(k string) string { return map[string]string{"KLAVI_SECRET_KEY": "sk"}[k] })
		assert.Equal(t, "", getenv("KLAVI_ACCESS_KEY"))
		assert.Equal(t, "sk", getenv("KLAVI_SECRET_KEY"))
	})

	t.Run("the config's ${NAME} expands from a credential", func(t *testing.T) {
		cfgFile := filepath.Join(t.TempDir(), "billingd.yaml")
		require.NoError(t, os.WriteFile(cfgFile, []byte("klavi:\n  access_key: ${KLAVI_ACCESS_KEY}\n  secret_key: ${KLAVI_SECRET_KEY}\n"), 0o600))
		cfg, err := LoadConfig(cfgFile, getenv)
		require.NoError(t, err)
		assert.Equal(t, "ak-from-file", cfg.Klavi.AccessKey)
		assert.Equal(t, "sk-from-env", cfg.Klavi.SecretKey)
	})
}
