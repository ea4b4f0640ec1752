// Command prog is a Go program with one module dependency, built by the
// sbom tests to read its build information back.
package main

import (
	"fmt"

	"github.com/google/uuid"
)

func main() { fmt.Println(uuid.NewSHA1(uuid.NameSpaceURL, []byte("ksmg"))) }
