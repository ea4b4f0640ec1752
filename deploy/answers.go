package deploy

import (
	"errors"
	"fmt"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
)

// ErrGatewayWithoutAddress is the problem of a gateway given without the
// address it belongs to.
var ErrGatewayWithoutAddress = errors.New("a gateway needs ksmg.network.address")

// AnswerProblem is one problem with a node's first-boot answers; Key is
// "" for a problem of no single key.
type AnswerProblem struct {
	Key string
	Err error
}

func (p AnswerProblem) Error() string {
	if p.Key == "" {
		return p.Err.Error()
	}
	return p.Key + ": " + p.Err.Error()
}

// CheckAnswerKeys checks first-boot answers by the rules first boot
// applies (answers.FromKeys): every value that first boot would reject.
// It is the one check of the single deploy commands, the fleet's inventory
// and the drivers' plans. A gateway is not judged when its address is
// itself wrong (the address's problem says what to fix). Messages carry no
// values (some are secrets).
func CheckAnswerKeys(props map[string]string) []AnswerProblem {
	_, errs := answers.FromKeys(props, "eth0")
	bad := map[string]bool{}
	for _, err := range errs {
		var fe *answers.FieldError
		if errors.As(err, &fe) {
			bad[fe.Key] = true
		}
	}
	var out []AnswerProblem
	for _, err := range errs {
		var fe *answers.FieldError
		if !errors.As(err, &fe) {
			out = append(out, AnswerProblem{Err: err})
			continue
		}
		switch {
		case fe.Key == "ksmg.network.gateway" && props["ksmg.network.address"] == "":
			if !bad["ksmg.network.address"] {
				out = append(out, AnswerProblem{fe.Key, ErrGatewayWithoutAddress})
			}
		case fe.Key == "ksmg.network.gateway" && bad["ksmg.network.address"],
			fe.Key == "ksmg.network.ipv6.gateway" && bad["ksmg.network.ipv6.address"]:
		default:
			out = append(out, AnswerProblem{fe.Key, fe.Err})
		}
	}
	return out
}

// CheckAnswers is CheckAnswerKeys as errors ("key: reason").
func CheckAnswers(props map[string]string) []error {
	var errs []error
	for _, p := range CheckAnswerKeys(props) {
		errs = append(errs, fmt.Errorf("%w", p))
	}
	return errs
}
