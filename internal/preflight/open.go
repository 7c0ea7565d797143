package preflight

import (
	"fmt"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/registry"
)

// OpenAdvice turns the error of a connector that could not even be opened
// (bad DSN, unreachable server, refused login) into the check's name and its
// fix. When a connector cannot be opened there is no value to ask, so each
// connector registers its advice by type, as it registers its factory. dsn
// is the configured DSN, for names a fix may need (the user); advice must
// not put it, or its password, into the fix.
type OpenAdvice func(dsn string, err error) (check, fix string)

var sourceAdvice, targetAdvice registry.Registry[OpenAdvice]

// RegisterSourceAdvice sets the advice for sources of type typ.
func RegisterSourceAdvice(typ string, a OpenAdvice) { sourceAdvice.Register(typ, a) }

// RegisterTargetAdvice sets the advice for targets of type typ.
func RegisterTargetAdvice(typ string, a OpenAdvice) { targetAdvice.Register(typ, a) }

// SourceOpenFailed is the blocking finding for a source that could not be
// opened. err must not carry secrets (connectors redact their DSNs).
func SourceOpenFailed(s config.Source, err error) Finding {
	return openFailed(SourceComponent(s.Name), "sources[].dsn", s.Type, s.DSN, &sourceAdvice, err)
}

// TargetOpenFailed is the blocking finding for a target that could not be
// opened.
func TargetOpenFailed(t config.Target, err error) Finding {
	return openFailed(TargetComponent(t.Name), "targets[].dsn", t.Type, t.DSN, &targetAdvice, err)
}

func openFailed(component, dsnKey, typ, dsn string, advice *registry.Registry[OpenAdvice], err error) Finding {
	f := Finding{Component: component, Check: "connect", Severity: Block, Message: err.Error(),
		Fix: fmt.Sprintf("check %s (host, port, database, user, password) and that the server accepts connections from this host", dsnKey)}
	if a, ok := advice.Get(typ); ok {
		check, fix := a(dsn, err)
		if check != "" {
			f.Check = check
		}
		if fix != "" {
			f.Fix = fix
		}
	}
	return f
}
