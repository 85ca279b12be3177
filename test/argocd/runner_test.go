// The runner follows Argo CD's util/lua (ExecuteHealthLua) for health checks configured in
// argocd-cm: a gopher-lua state without the standard libraries except package, base and table,
// the live object as the global `obj` (decoded from the unstructured object: maps and slices
// become tables, integers and floats numbers), a one-second time limit, and a returned table that
// is encoded to JSON and read as {status, message}. A status outside Argo CD's health codes
// becomes Unknown, as in Argo CD; a Lua error is returned as an error, which Argo CD shows as
// Unknown with the error text.

package argocd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Argo CD's health codes (gitops-engine pkg/health).
const (
	Healthy     = "Healthy"
	Progressing = "Progressing"
	Degraded    = "Degraded"
	Suspended   = "Suspended"
	Missing     = "Missing"
	Unknown     = "Unknown"
)

// Timeout is the time Argo CD gives a health script.
const Timeout = time.Second

// Health is what a health script returns.
type Health struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// Run evaluates a health script against an object given as unstructured content
// (map[string]any as client-go's unstructured package holds it).
func Run(script string, obj map[string]any) (Health, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	// Argo CD opens these for custom health checks (its "safe" os library too, which kaudit's
	// scripts do not use). string and math are not available unless useOpenLibs is set.
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Health{}, fmt.Errorf("opening Lua library %q: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj))
	if err := l.DoString(script); err != nil {
		return Health{}, err
	}
	ret := l.Get(-1)
	table, ok := ret.(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
	value, err := encodeValue(table, 0)
	if err != nil {
		return Health{}, err
	}
	data, err := json.Marshal(value)
	if err != nil {
		return Health{}, err
	}
	var h Health
	if err := json.Unmarshal(data, &h); err != nil {
		return Health{}, err
	}
	switch h.Status {
	case Healthy, Progressing, Degraded, Suspended, Missing, Unknown:
		return h, nil
	}
	return Health{Status: Unknown, Message: "Lua returned an invalid health status"}, nil
}

// decodeValue is Argo CD's conversion of the live object into Lua values.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

var errNested = errors.New("nested table too deep")

// encodeValue turns the returned table into JSON-able Go values like layeh.com/gopher-json,
// which Argo CD uses: a table with an array part is an array, other tables are objects with
// string keys, and an empty table is an empty array.
func encodeValue(v lua.LValue, depth int) (any, error) {
	if depth > 100 {
		return nil, errNested
	}
	switch v := v.(type) {
	case lua.LBool:
		return bool(v), nil
	case lua.LNumber:
		return float64(v), nil
	case lua.LString:
		return string(v), nil
	case *lua.LNilType:
		return nil, nil
	case *lua.LTable:
		if v.MaxN() > 0 || isEmpty(v) {
			arr := make([]any, 0, v.MaxN())
			for i := 1; i <= v.MaxN(); i++ {
				item, err := encodeValue(v.RawGetInt(i), depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, item)
			}
			return arr, nil
		}
		obj := map[string]any{}
		var err error
		v.ForEach(func(key, value lua.LValue) {
			if err != nil {
				return
			}
			k, ok := key.(lua.LString)
			if !ok {
				err = fmt.Errorf("cannot encode non-string key %s", key.Type())
				return
			}
			obj[string(k)], err = encodeValue(value, depth+1)
		})
		return obj, err
	}
	return nil, fmt.Errorf("cannot encode %s to JSON", v.Type())
}

func isEmpty(t *lua.LTable) bool {
	key, _ := t.Next(lua.LNil)
	return key == lua.LNil
}
