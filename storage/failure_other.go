//go:build !unix

package storage

import (
	"errors"
	"os"
)

func isNoSpace(error) bool { return false }

func isReadOnly(err error) bool { return errors.Is(err, os.ErrPermission) }
