package rest

import (
	"context"
	"sort"
	"strings"
	"time"
)

// batchForbidden are the methods refused inside batch, as Bitrix's rest
// module (rest_provider.php) refuses them.
var batchForbidden = map[string]bool{"batch": true, "download": true, "upload": true}

// batch is the built-in "batch" method (docs/protocol.md, "REST API"). It
// runs cmd items in the order sent, each with the outer caller's identity and
// its own scope check, and always succeeds: item failures go to result_error.
func (s *Server) batch(ctx context.Context, c Caller, p Params) (any, error) {
	if ctx.Value(ctxInBatch) != nil {
		// Unreachable through batch itself (refused per item), but keeps a
		// direct Go caller from recursing.
		return nil, BatchMethodNotAllowed()
	}
	halt := Truthy(p.Get("halt"))
	keys, cmds := batchCommands(ctx, p)
	if len(keys) > maxBatch {
		// Refused whole, as the docs describe ("More than 50 subqueries"):
		// answering each extra item in result_error would let one request
		// buy an answer many times its own size.
		return nil, BatchLengthExceeded()
	}

	out := struct{ result, errs, total, next, times *omap }{
		phpArray(), phpArray(), phpArray(), phpArray(), phpArray(),
	}
	subCtx := context.WithValue(ctx, ctxInBatch, true)
	for _, key := range keys {
		cmd, ok := cmds[key].(string)
		if !ok {
			continue // non-string items are skipped silently
		}
		start := s.now()
		m, sub, err := s.batchItem(cmd, c)
		if err == nil {
			var (
				res    any
				ps, pe time.Time
			)
			res, ps, pe, err = s.invoke(subCtx, m, c, sub.params())
			if err == nil {
				item := newOmap()
				liftPaging(res, item, "next", "total")
				out.result.set(key, item.vals["result"])
				if v, ok := item.get("next"); ok {
					out.next.set(key, v)
				}
				if v, ok := item.get("total"); ok {
					out.total.set(key, v)
				}
				out.times.set(key, s.timing(start, s.now(), pe.Sub(ps)))
				continue
			}
		}
		re := s.toRESTError(ctx, err, "method", "batch", "item", key)
		e := newOmap()
		e.set("error", re.Code)
		e.set("error_description", re.Description)
		out.errs.set(key, e)
		if halt {
			break
		}
	}
	r := newOmap()
	r.set("result", out.result)
	r.set("result_error", out.errs)
	r.set("result_total", out.total)
	r.set("result_next", out.next)
	r.set("result_time", out.times)
	return r, nil
}

// phpArray is an ordered map encoded as PHP would: "[]" when empty, a list
// when its keys are 0..n-1 (Bitrix's batch emits a map that PHP leaves empty
// as []).
func phpArray() *omap {
	o := newOmap()
	o.phpJSON = true
	return o
}

// batchCommands returns the cmd items in the order sent. The server passes
// the ordered tree through the context; a direct Go call falls back to the
// order of Params.List/Map (integer keys first, then sorted).
func batchCommands(ctx context.Context, p Params) ([]string, map[string]any) {
	if tree, ok := ctx.Value(ctxOrderedParams).(*omap); ok {
		for _, k := range tree.keys {
			if strings.EqualFold(k, "cmd") {
				if o, ok := tree.vals[k].(*omap); ok {
					return o.keys, o.vals
				}
				return nil, nil
			}
		}
		return nil, nil
	}
	m, ok := p.Map("cmd")
	if !ok {
		return nil, nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, aok := phpIntKey(keys[i])
		b, bok := phpIntKey(keys[j])
		if aok && bok {
			return a < b
		}
		if aok != bok {
			return aok
		}
		return keys[i] < keys[j]
	})
	return keys, m
}

// batchItem resolves one "method?query" command. The query uses parse_str
// semantics and loses the keys the server consumes, like a top-level call.
func (s *Server) batchItem(cmd string, c Caller) (Method, *omap, error) {
	name, query, _ := strings.Cut(cmd, "?")
	name, _, _ = strings.Cut(name, "#")
	name = strings.Trim(strings.TrimSpace(name), "/")
	if batchForbidden[strings.ToLower(name)] {
		return Method{}, nil, BatchMethodNotAllowed()
	}
	m, ok := s.lookup(name)
	if !ok {
		return Method{}, nil, MethodNotFound()
	}
	if err := checkScope(m, c); err != nil {
		return Method{}, nil, err
	}
	sub := newOmap()
	parsePHPForm(query, sub)
	for _, k := range consumedKeys {
		sub.del(k)
	}
	sub.foldCase()
	return m, sub, nil
}
