// Added to FerretDB v1's SQLite backend by deploy/local/mongo.sh when it builds the local server.
//
// FerretDB 1.24's SQLite backend hands SQLite no condition but `_id`: any other query reads every row of the
// collection and decodes each whole document in Go before filtering it (~85 µs per 1.5 KB dispatch here: a status
// count over 24,000 dispatches took 2 s of a core, and the outbox relay's leftover scan as long, each a stall for
// everything else on a two-core machine). This pushes the simplest top-level conditions down as a *prefilter*:
// SQLite's own JSON functions drop the rows that cannot match before FerretDB decodes them (the same scan in
// ~1/10 of the time). FerretDB still filters every row it reads with the whole filter afterwards, so a prefilter
// only has to keep every row that may match (a superset), never exactly the matching ones:
//
//   - `{k: "s"}` and `{k: {$in: ["s", ...]}}` (strings only): the field's JSON value is one of the strings, or the
//     field is an array (MongoDB matches an array that holds the value);
//   - `{k: {$exists: true}}`: the field is there (JSON null included);
//   - `{"k.0": {$exists: true}}` (an array's first element, e.g. an outbox with entries): the field is a non-empty
//     array, or an object (whose key "0" may exist).
//
// Every other condition (operators, other types, dotted paths, `$and`/`$or`, ...) adds nothing: the rows it would
// drop are still read and dropped by FerretDB, as before. Conditions are ANDed, as the filter's keys are.

package sqlite

import (
	"fmt"
	"strings"

	"github.com/FerretDB/FerretDB/internal/backends/sqlite/metadata"
	"github.com/FerretDB/FerretDB/internal/types"
)

// smeportalPrefilter returns a WHERE clause and its arguments that keep every row `filter` may match; "" when no
// condition of the filter can be pushed down.
func smeportalPrefilter(filter *types.Document) (string, []any) {
	if filter == nil || filter.Len() == 0 || filter.Len() > 32 {
		return "", nil
	}

	keys := filter.Keys()
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			return "", nil // a key given twice: leave the filter to FerretDB
		}
		seen[k] = struct{}{}
	}

	var conds []string
	var args []any

	for _, k := range keys {
		v, _ := filter.Get(k)
		cond, condArgs := smeportalCondition(k, v)
		if cond != "" {
			conds = append(conds, cond)
			args = append(args, condArgs...)
		}
	}

	if len(conds) == 0 {
		return "", nil
	}

	return " WHERE " + strings.Join(conds, " AND "), args
}

// smeportalField returns the JSON path of a top-level field, or "" for a key that is not one.
func smeportalField(k string) string {
	if k == "" || strings.HasPrefix(k, "$") || strings.ContainsAny(k, ".\"\\") {
		return ""
	}

	return `'$."` + strings.ReplaceAll(k, "'", "''") + `"'`
}

func smeportalCondition(k string, v any) (string, []any) {
	col := metadata.DefaultColumn

	if strings.HasSuffix(k, ".0") {
		path := smeportalField(strings.TrimSuffix(k, ".0"))
		if path == "" || !smeportalExistsTrue(v) {
			return "", nil
		}

		return fmt.Sprintf(`(json_array_length(%[1]s, %[2]s) > 0 OR json_type(%[1]s, %[2]s) = 'object')`, col, path), nil
	}

	path := smeportalField(k)
	if path == "" {
		return "", nil
	}

	switch v := v.(type) {
	case string:
		return fmt.Sprintf(`(json_extract(%[1]s, %[2]s) = ? OR json_type(%[1]s, %[2]s) = 'array')`, col, path), []any{v}

	case *types.Document:
		if smeportalExistsTrue(v) {
			return fmt.Sprintf(`json_type(%s, %s) IS NOT NULL`, col, path), nil
		}

		arr := smeportalIn(v, 500) // (deploy/local/ferretdb-idin.go)
		if arr == nil {
			return "", nil
		}

		args := make([]any, 0, arr.Len())
		for i := 0; i < arr.Len(); i++ {
			s, ok := smeportalValue(arr.Get(i)).(string)
			if !ok {
				return "", nil // null, a regular expression, a number...: MongoDB's rules are not a string compare
			}
			args = append(args, s)
		}

		return fmt.Sprintf(`(json_extract(%[1]s, %[2]s) IN (%[3]s) OR json_type(%[1]s, %[2]s) = 'array')`,
			col, path, smeportalMarks(len(args))), args
	}

	return "", nil
}

// smeportalExistsTrue reports whether v is exactly `{$exists: true}`.
func smeportalExistsTrue(v any) bool {
	d, ok := v.(*types.Document)
	if !ok || d.Len() != 1 {
		return false
	}

	e, err := d.Get("$exists")
	if err != nil {
		return false
	}

	b, ok := e.(bool)

	return ok && b
}

func smeportalValue(v any, err error) any {
	if err != nil {
		return nil
	}

	return v
}
