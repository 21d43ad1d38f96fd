// Added to FerretDB v1's SQLite backend by deploy/local/mongo.sh when it builds the local server.
//
// FerretDB 1.24 pushes only `{_id: <string or ObjectID>}` down to SQLite; `{_id: {$in: [...]}}` read the whole
// table. MongoDB serves that `$in` from the `_id` index, and the services use it to read a batch's documents in one
// round trip (servicekit's deny-list check, the batched consumers, the outbox relay). Pushed down, SQLite reads
// exactly the rows of those ids through the `_id` index; FerretDB still filters every row it reads with the whole
// filter afterwards, so the result is the same as without the patch.

package sqlite

import (
	"fmt"
	"strings"

	"github.com/FerretDB/FerretDB/internal/backends/sqlite/metadata"
	"github.com/FerretDB/FerretDB/internal/handler/sjson"
	"github.com/FerretDB/FerretDB/internal/types"
)

// smeportalIDIn returns the WHERE clause and its arguments for `{$in: [ids]}` on _id when every id is a string
// or an ObjectID (as the equality pushdown); "" otherwise.
func smeportalIDIn(cond *types.Document) (string, []any) {
	arr := smeportalIn(cond, 1000)
	if arr == nil {
		return "", nil
	}
	args := make([]any, 0, arr.Len())
	for i := 0; i < arr.Len(); i++ {
		id, _ := arr.Get(i)
		switch id.(type) {
		case string, types.ObjectID:
			b, err := sjson.MarshalSingleValue(id)
			if err != nil {
				return "", nil
			}
			args = append(args, string(b))
		default:
			return "", nil
		}
	}
	return fmt.Sprintf(` WHERE %s IN (%s)`, metadata.IDColumn, smeportalMarks(len(args))), args
}

// smeportalIn returns the array of a condition that is exactly `{$in: [...]}` with 1 to max elements; nil otherwise.
func smeportalIn(cond *types.Document, max int) *types.Array {
	if cond.Len() != 1 {
		return nil
	}
	v, err := cond.Get("$in")
	if err != nil {
		return nil
	}
	arr, ok := v.(*types.Array)
	if !ok || arr.Len() == 0 || arr.Len() > max {
		return nil
	}
	return arr
}

// smeportalMarks returns n SQL parameter marks: "?, ?, ?".
func smeportalMarks(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
