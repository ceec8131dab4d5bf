package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
)

// jsonBody is a buffer and an encoding/json encoder writing to it, reused
// from answer to answer.
type jsonBody struct {
	buf bytes.Buffer
	enc *json.Encoder
}

// jsonBodies holds the jsonBodies writeJSON renders with.
var jsonBodies = sync.Pool{New: func() any {
	b := &jsonBody{}
	b.enc = json.NewEncoder(&b.buf)
	return b
}}

// maxPooledJSON is the largest rendered answer whose buffer is kept.
const maxPooledJSON = 16 << 10

// writeJSON answers status with v as JSON: the bytes and content type of
// gin's c.JSON (encoding/json, HTML characters escaped), rendered into a
// pooled buffer rather than the new slice json.Marshal returns, which is
// 350 of the ~500 bytes an answer to /decide allocated. The data-plane
// endpoints (/decide, /identify) answer through it; the rest use c.JSON.
func writeJSON(c *gin.Context, status int, v any) {
	b := jsonBodies.Get().(*jsonBody)
	defer func() {
		if b.buf.Cap() <= maxPooledJSON {
			jsonBodies.Put(b)
		}
	}()
	b.buf.Reset()
	if err := b.enc.Encode(v); err != nil { // our answer types always encode
		_ = c.Error(err)
		c.Status(http.StatusInternalServerError)
		return
	}
	h := c.Writer.Header()
	if len(h["Content-Type"]) == 0 {
		h["Content-Type"] = jsonContentType
	}
	c.Status(status)
	body := b.buf.Bytes()
	_, _ = c.Writer.Write(body[:len(body)-1]) // without Encode's newline, as json.Marshal
}

// jsonContentType is shared by every answer, as gin shares its own: a
// header map that is only ever set, never appended to in place.
var jsonContentType = []string{"application/json; charset=utf-8"}
