package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
)

// IDX is the content of one IDX file: its dimensions and its unsigned bytes.
type IDX struct {
	Dims []int
	Data []byte
}

// maxIDXBytes bounds what ReadIDX will allocate for a file's data.
const maxIDXBytes = 1 << 30

// ReadIDX reads an IDX file of unsigned bytes (type code 0x08), gzip
// compressed when the name ends in ".gz".
func ReadIDX(path string) (*IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, err)
		}
		defer gz.Close()
		r = gz
	}
	idx, err := decodeIDX(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return idx, nil
}

func decodeIDX(r io.Reader) (*IDX, error) {
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, fmt.Errorf("%w: reading IDX header: %v", ErrFormat, err)
	}
	if magic[0] != 0 || magic[1] != 0 {
		return nil, fmt.Errorf("%w: not an IDX file (magic % x)", ErrFormat, magic)
	}
	if magic[2] != 0x08 {
		return nil, fmt.Errorf("%w: IDX type 0x%02x is not unsigned bytes (0x08)", ErrFormat, magic[2])
	}
	ndim := int(magic[3])
	if ndim < 1 {
		return nil, fmt.Errorf("%w: IDX file with no dimensions", ErrFormat)
	}
	dims := make([]int, ndim)
	size := 1
	for i := range dims {
		var d uint32
		if err := binary.Read(r, binary.BigEndian, &d); err != nil {
			return nil, fmt.Errorf("%w: reading IDX dimension %d: %v", ErrFormat, i, err)
		}
		dims[i] = int(d)
		size *= int(d)
		if size > maxIDXBytes {
			return nil, fmt.Errorf("%w: IDX file declares more than %d bytes", ErrFormat, maxIDXBytes)
		}
	}
	// Read what is there rather than allocate what the header claims: a
	// few bytes declaring a gigabyte cost no more than they are.
	data, err := io.ReadAll(io.LimitReader(r, int64(size)))
	if err != nil {
		return nil, fmt.Errorf("%w: reading IDX data: %v", ErrFormat, err)
	}
	if len(data) != size {
		return nil, fmt.Errorf("%w: IDX data of %d bytes is shorter than its dimensions %v", ErrFormat, len(data), dims)
	}
	return &IDX{Dims: dims, Data: data}, nil
}
