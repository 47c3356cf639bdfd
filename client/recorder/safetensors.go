package recorder

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// stReserve is where a safetensors clip's data starts: 8 bytes of header
// length, then the JSON header padded with spaces (which the format allows).
// The header is written last, once the frame count is known; the frames
// stream to disk meanwhile. A header that outgrows the space moves the data.
const stReserve = 64 << 10

// safetensorsShard writes a clip as one .safetensors file with tensors
// "frames" (U8 [T, H, W, 3]), "ts" (I64 [T]), with audio "audio" (F32
// [S]), and the metadata in __metadata__.
type safetensorsShard struct {
	size Size
}

// stTensor is one entry of a safetensors header.
type stTensor struct {
	DType       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// begin reserves the header's space.
func (s *safetensorsShard) begin(f *clipFile) error {
	_, err := f.Write(bytes.Repeat([]byte{' '}, stReserve))
	return err
}

func (s *safetensorsShard) end(f *clipFile, n int, ts []int64, audio []float32, meta []byte) error {
	b := make([]byte, 8*len(ts), 8*len(ts)+4*len(audio))
	for i, t := range ts {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(t))
	}
	for _, v := range audio {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	h, err := s.header(n, audio, meta)
	if err != nil {
		return err
	}
	if 8+len(h) > stReserve {
		pad := (8 - len(h)%8) % 8 // keep the data 8-byte aligned
		h = append(h, bytes.Repeat([]byte{' '}, pad)...)
		head := append(binary.LittleEndian.AppendUint64(nil, uint64(len(h))), h...)
		if err := f.rewrite(head, stReserve); err != nil {
			return fmt.Errorf("safetensors header: %w", err)
		}
		return nil
	}
	head := bytes.Repeat([]byte{' '}, stReserve)
	binary.LittleEndian.PutUint64(head, uint64(stReserve-8))
	copy(head[8:], h)
	return f.patch(head, 0)
}

// header builds the JSON header: frames U8 [T,H,W,3], then ts I64 [T],
// then audio F32 [S] if there is audio, and the metadata as string values
// (the format allows only strings there).
func (s *safetensorsShard) header(n int, audio []float32, meta []byte) ([]byte, error) {
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
	frames := int64(n) * int64(s.size.W) * int64(s.size.H) * 3
	h := map[string]any{
		"__metadata__": md,
		"frames":       stTensor{"U8", []int{n, s.size.H, s.size.W, 3}, [2]int64{0, frames}},
		"ts":           stTensor{"I64", []int{n}, [2]int64{frames, frames + 8*int64(n)}},
	}
	if audio != nil {
		at := frames + 8*int64(n)
		h["audio"] = stTensor{"F32", []int{len(audio)}, [2]int64{at, at + 4*int64(len(audio))}}
	}
	return json.Marshal(h)
}
