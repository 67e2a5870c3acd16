package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// credentialName is what an environment variable must look like to be looked up as
// a credential file: the names ${NAME} takes in the config, nothing with a path in it.
var credentialName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// withCredentials extends getenv with systemd credentials (LoadCredential= in
// deploy/systemd/billingd.service). When NAME is unset or empty and
// $CREDENTIALS_DIRECTORY is set, NAME's value is the content of the file
// $CREDENTIALS_DIRECTORY/name, name being NAME in lower case: KLAVI_ACCESS_KEY is
// read from klavi_access_key. Trailing newlines are dropped (files written by echo).
// The environment wins over a credential, so EnvironmentFile= and containers keep
// working. A missing or unreadable file reads as unset: the config check then names
// the empty key (klavi.access_key: is empty).
//
// Because it sits under getenv, every ${NAME} of the config and every variable the
// operator commands read ($BILLINGD_ADMIN_TOKEN) can come from a credential.
func withCredentials(getenv func(string) string) func(string) string {
	return func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		dir := getenv("CREDENTIALS_DIRECTORY")
		if dir == "" || name == "CREDENTIALS_DIRECTORY" || !credentialName.MatchString(name) {
			return ""
		}
		b, err := os.ReadFile(filepath.Join(dir, strings.ToLower(name)))
		if err != nil {
			return ""
		}
		return strings.TrimRight(string(b), "\r\n")
	}
}
