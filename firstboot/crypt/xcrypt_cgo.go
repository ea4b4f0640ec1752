//go:build linux && cgo

package crypt

/*
#cgo LDFLAGS: -lcrypt
#include <crypt.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

// xcrypt hashes phrase with setting (or a fresh setting for prefix when
// setting is empty) into out. The work area holds the phrase's derived
// state, so it is wiped before it is freed.
static int xcrypt(const char *phrase, const char *prefix, unsigned long count, const char *setting, char *out, int outlen) {
	char gensalt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (setting[0] == 0) {
		if (crypt_gensalt_rn(prefix, count, NULL, 0, gensalt, sizeof gensalt) == NULL)
			return errno ? errno : EINVAL;
		setting = gensalt;
	}
	struct crypt_data *data = calloc(1, sizeof *data);
	if (data == NULL)
		return ENOMEM;
	errno = 0;
	char *h = crypt_rn(phrase, setting, data, sizeof *data);
	int rc = 0;
	if (h == NULL || h[0] == '*')
		rc = errno ? errno : EINVAL;
	else if (strlen(h) + 1 > (size_t)outlen)
		rc = ERANGE;
	else
		strcpy(out, h);
	explicit_bzero(data, sizeof *data);
	free(data);
	return rc;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"unsafe"
)

// xcrypt is crypt(3) from libxcrypt: a fresh salt for prefix and cost
// (0: libxcrypt's default) when setting is empty, else the given setting
// (to verify). The C copy of the password is wiped before it is freed.
func xcrypt(password, prefix string, cost int, setting string) (string, error) {
	if strings.ContainsRune(password, 0) {
		return "", errors.New("password contains a NUL byte")
	}
	phrase := C.CBytes(append([]byte(password), 0))
	defer func() {
		C.explicit_bzero(phrase, C.size_t(len(password)+1))
		C.free(phrase)
	}()
	cPrefix, cSetting := C.CString(prefix), C.CString(setting)
	defer C.free(unsafe.Pointer(cPrefix))
	defer C.free(unsafe.Pointer(cSetting))
	out := (*C.char)(C.calloc(1, C.CRYPT_OUTPUT_SIZE))
	defer C.free(unsafe.Pointer(out))
	if rc := C.xcrypt((*C.char)(phrase), cPrefix, C.ulong(cost), cSetting, out, C.CRYPT_OUTPUT_SIZE); rc != 0 {
		return "", fmt.Errorf("libxcrypt: %w", syscall.Errno(rc))
	}
	return C.GoString(out), nil
}
