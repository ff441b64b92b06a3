package kmsfake

import (
	"context"
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
)

// celEnv is the environment of attribute mappings and conditions, as in
// Workload Identity Federation: the token's claims are "assertion"; a
// condition also sees the mapped "google" and "attribute" values.
var celEnv = func() *cel.Env {
	env, err := cel.NewEnv(
		cel.Variable("assertion", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("google", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("attribute", cel.MapType(cel.StringType, cel.DynType)),
	)
	if err != nil {
		panic(err)
	}
	return env
}()

// celCostLimit bounds one evaluation.
const celCostLimit = 1_000_000

type celProgram struct {
	text string
	prg  cel.Program
}

func compileCEL(text string) (*celProgram, error) {
	ast, iss := celEnv.Compile(text)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("CEL: %s", strings.TrimSpace(iss.Err().Error()))
	}
	prg, err := celEnv.Program(ast, cel.CostLimit(celCostLimit))
	if err != nil {
		return nil, fmt.Errorf("CEL: %v", err)
	}
	return &celProgram{text: text, prg: prg}, nil
}

func (p *celProgram) eval(ctx context.Context, assertion, google, attribute map[string]any) (any, error) {
	out, _, err := p.prg.ContextEval(ctx, map[string]any{
		"assertion": assertion, "google": google, "attribute": attribute,
	})
	if err != nil {
		return nil, err
	}
	return out.Value(), nil
}
