package turn

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Over TCP and TLS, TURN messages follow each other on the stream (RFC
// 5766 11.5): STUN messages, whose header carries their length, and
// ChannelData, whose length is padded to a multiple of 4. Pion's STUNConn
// cuts the stream itself, but it computes the padded ChannelData size in a
// uint16: a declared length above 65528 wraps to a frame of 0 bytes, and
// its read loop then spins for ever on one connection. frameReader cuts
// the stream first and hands pion only whole frames it can read.

// errBadFrame means a stream carried something that is neither STUN nor
// ChannelData; the connection is closed.
var errBadFrame = errors.New("TURN stream: not a STUN or ChannelData frame")

const (
	stunHeaderLen     = 20
	channelHeaderLen  = 4
	stunMagicCookie   = 0x2112A442
	streamReadBufSize = 4096
)

// frameReader reads whole TURN frames from a stream.
type frameReader struct {
	r   *bufio.Reader
	hdr [stunHeaderLen]byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, streamReadBufSize)}
}

// next reads the next frame into buf and returns it. Frames bigger than
// buf are skipped: pion drops what exceeds its MTU anyway.
func (f *frameReader) next(buf []byte) ([]byte, error) {
	for {
		size, err := f.frameSize()
		if err != nil {
			return nil, err
		}
		if size > len(buf) {
			if _, err := f.r.Discard(size); err != nil {
				return nil, err
			}
			continue
		}
		if _, err := io.ReadFull(f.r, buf[:size]); err != nil {
			return nil, noEOF(err)
		}
		return buf[:size], nil
	}
}

// frameSize peeks at the next frame's header and returns its whole size.
func (f *frameReader) frameSize() (int, error) {
	h, err := f.r.Peek(channelHeaderLen)
	if err != nil {
		return 0, err // io.EOF between frames is a clean end
	}
	length := int(binary.BigEndian.Uint16(h[2:4]))
	switch {
	case h[0] < 0x40: // STUN: the two top bits are zero
		h, err = f.r.Peek(stunHeaderLen)
		if err != nil {
			return 0, noEOF(err)
		}
		if binary.BigEndian.Uint32(h[4:8]) != stunMagicCookie || length%4 != 0 {
			return 0, errBadFrame
		}
		return stunHeaderLen + length, nil
	case h[0] < 0x80: // ChannelData, numbers 0x4000-0x7FFF
		return channelHeaderLen + (length+3)&^3, nil
	default:
		return 0, fmt.Errorf("%w (first byte %#x)", errBadFrame, h[0])
	}
}

// noEOF turns an end of stream inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
