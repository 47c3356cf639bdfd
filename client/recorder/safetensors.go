package recorder

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// stReserve is where a safetensors clip's data starts: 8 bytes of header
// length, then the JSON header padded with spaces (which the format allows).
// The header is written last, once the frame count is known; the frames
// stream to disk meanwhile. A header that outgrows the space moves the data.
const stReserve = 64 << 10

// stTensor is one entry of a safetensors header.
type stTensor struct {
	DType       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// stHeader builds the JSON header: frames U8 [T,H,W,3], then ts I64 [T],
// and the metadata as string values (the format allows only strings there).
func (c *Clip) stHeader(meta []byte) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(meta, &fields); err != nil {
		return nil, err
	}
	md := make(map[string]string, len(fields))
	for k, v := range fields {
		if s, err := strconv.Unquote(string(v)); err == nil && len(v) > 0 && v[0] == '"' {
			md[k] = s
		} else {
			md[k] = string(v)
		}
	}
	s := c.o.cfg.Size
	frames := int64(c.n) * int64(c.frameLen)
	h := map[string]any{
		"__metadata__": md,
		"frames":       stTensor{"U8", []int{c.n, s.H, s.W, 3}, [2]int64{0, frames}},
		"ts":           stTensor{"I64", []int{c.n}, [2]int64{frames, frames + 8*int64(c.n)}},
	}
	return json.Marshal(h)
}

func (c *Clip) finishSafetensors(meta []byte) error {
	ts := make([]byte, 8*len(c.ts))
	for i, t := range c.ts {
		binary.LittleEndian.PutUint64(ts[8*i:], uint64(t))
	}
	if _, err := c.f.Write(ts); err != nil {
		return err
	}
	h, err := c.stHeader(meta)
	if err != nil {
		return err
	}
	if 8+len(h) > stReserve {
		return c.moveSafetensors(h)
	}
	head := make([]byte, stReserve)
	binary.LittleEndian.PutUint64(head, uint64(stReserve-8))
	copy(head[8:], h)
	copy(head[8+len(h):], bytes.Repeat([]byte{' '}, stReserve-8-len(h)))
	_, err = c.f.WriteAt(head, 0)
	return err
}

// moveSafetensors rewrites the file with a header larger than the reserved
// space: a rare case (a source that changed size very often).
func (c *Clip) moveSafetensors(h []byte) error {
	pad := (8 - len(h)%8) % 8 // keep the data 8-byte aligned
	h = append(h, bytes.Repeat([]byte{' '}, pad)...)
	tmp2 := strings.TrimSuffix(c.tmp, partialSuffix) + ".move" + partialSuffix
	f2, err := os.OpenFile(tmp2, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	_, err = f2.Write(append(n[:], h...))
	if err == nil {
		end, _ := c.f.Seek(0, io.SeekEnd)
		_, err = io.Copy(f2, io.NewSectionReader(c.f, stReserve, end-stReserve))
	}
	if err == nil {
		err = os.Rename(tmp2, c.tmp)
	}
	if err != nil {
		f2.Close()
		os.Remove(tmp2)
		return fmt.Errorf("safetensors header: %w", err)
	}
	c.f.Close()
	c.f = f2
	return nil
}
