package shareholder

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
)

// Policy is a compiled CEL release policy over two variables:
//
//	assertion  the verified token's claims (map, same names as GCP workload
//	           identity conditions: swname, dbgstat, submods.container.image_digest, ...)
//	request    {"time": timestamp, "remote_addr": "ip:port", "remote_ip": "ip"}
//
// It must evaluate to a bool; anything else, or an evaluation error (a
// missing claim, the cost limit), is a refusal.
type Policy struct {
	text string
	prg  cel.Program
}

// RequestInfo is what a policy sees as "request".
type RequestInfo struct {
	Time       time.Time
	RemoteAddr string
	RemoteIP   string
}

var policyEnv = func() *cel.Env {
	env, err := cel.NewEnv(
		cel.Variable("assertion", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
	)
	if err != nil {
		panic(err)
	}
	return env
}()

// CompilePolicy parses and type-checks text. Errors carry CEL's position
// (line:column) and caret display. costLimit 0 means DefaultCostLimit.
func CompilePolicy(text string, costLimit uint64) (*Policy, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("empty policy")
	}
	if costLimit == 0 {
		costLimit = DefaultCostLimit
	}
	ast, iss := policyEnv.Compile(text)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("CEL: %s", strings.TrimSpace(iss.Err().Error()))
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, fmt.Errorf("CEL: the policy evaluates to %s, want bool", t)
	}
	prg, err := policyEnv.Program(ast, cel.CostLimit(costLimit), cel.EvalOptions(cel.OptTrackCost))
	if err != nil {
		return nil, fmt.Errorf("CEL: %v", err)
	}
	return &Policy{text: text, prg: prg}, nil
}

// Text returns the policy source.
func (p *Policy) Text() string { return p.text }

// Eval reports whether the policy allows a release. The error explains a
// refusal caused by evaluation (for the audit log, not the caller).
func (p *Policy) Eval(ctx context.Context, assertion map[string]any, req RequestInfo) (bool, error) {
	if assertion == nil {
		assertion = map[string]any{}
	}
	vars := map[string]any{
		"assertion": assertion,
		"request": map[string]any{
			"time":        req.Time.UTC(),
			"remote_addr": req.RemoteAddr,
			"remote_ip":   req.RemoteIP,
		},
	}
	out, _, err := p.prg.ContextEval(ctx, vars)
	if err != nil {
		return false, fmt.Errorf("evaluation error: %v", err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("policy returned %s, not bool", out.Type())
	}
	return b, nil
}
