package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// Fuzz targets for the data files a participant reads: CSV tables and IDX
// files (MNIST). `make fuzz` runs them.

func idxBytes(dims []uint32, data []byte) []byte {
	b := []byte{0, 0, 0x08, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, data...)
}

func FuzzReadCSV(f *testing.F) {
	f.Add([]byte("a,b,label\n1,2,x\n3,4.5e-3,y\n"), "label")
	f.Add([]byte("label,a\n yes, 1\nno,NaN\n"), "label")
	f.Add([]byte("a,label\n1,x\n2\n"), "label")
	f.Add([]byte("\"a\nb\",label\n1,\"x\"\"\"\n2,y\n"), "label")
	f.Add([]byte("label\nx\ny\n"), "label")
	f.Add([]byte(""), "")
	f.Fuzz(func(t *testing.T, b []byte, label string) {
		tab, err := readCSV(bytes.NewReader(b), "fuzz.csv", label)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v is not ErrFormat", err)
			}
			return
		}
		d := tab.Data
		if err := d.Validate(); err != nil {
			t.Fatalf("dataset read does not validate: %v", err)
		}
		if d.Features != len(tab.FeatureNames) || d.Classes != len(tab.Classes) || d.Classes < 2 || d.Len() < 1 {
			t.Fatalf("%d features named %d, %d classes named %d, %d rows", d.Features, len(tab.FeatureNames), d.Classes, len(tab.Classes), d.Len())
		}
	})
}

func FuzzDecodeIDX(f *testing.F) {
	f.Add(idxBytes([]uint32{2, 3}, []byte{1, 2, 3, 4, 5, 6}))
	f.Add(idxBytes([]uint32{2, 3}, []byte{1, 2}))
	f.Add(idxBytes([]uint32{1 << 20, 1 << 20}, nil))
	f.Add(idxBytes([]uint32{1 << 15, 1 << 15}, nil)) // 1 GiB declared, none present
	f.Add(idxBytes([]uint32{0, 0xffffffff, 0xffffffff}, nil))
	f.Add([]byte{0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := decodeIDX(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v is not ErrFormat", err)
			}
			return
		}
		size := 1
		for _, d := range idx.Dims {
			size *= d
		}
		if size != len(idx.Data) || len(idx.Data) > len(b) {
			t.Fatalf("dimensions %v with %d bytes of data, from %d bytes", idx.Dims, len(idx.Data), len(b))
		}
	})
}

// FuzzMNIST: an images file and a labels file, decoded and paired.
func FuzzMNIST(f *testing.F) {
	img := make([]byte, 2*2*3)
	img[0], img[5] = 255, 128
	f.Add(idxBytes([]uint32{2, 2, 3}, img), idxBytes([]uint32{2}, []byte{7, 9}))
	f.Add(idxBytes([]uint32{2, 2, 3}, img), idxBytes([]uint32{2}, []byte{7, 10}))
	f.Add(idxBytes([]uint32{2, 2, 3}, img), idxBytes([]uint32{3}, []byte{1, 2, 3}))
	f.Add(idxBytes([]uint32{2, 0, 3}, nil), idxBytes([]uint32{2}, []byte{1, 2}))
	f.Add(idxBytes([]uint32{0, 28, 28}, nil), idxBytes([]uint32{0}, nil))
	f.Fuzz(func(t *testing.T, images, labels []byte) {
		im, err := decodeIDX(bytes.NewReader(images))
		if err != nil {
			return
		}
		lb, err := decodeIDX(bytes.NewReader(labels))
		if err != nil {
			return
		}
		ds, err := mnistDataset(im, lb, "images", "labels")
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v is not ErrFormat", err)
			}
			return
		}
		if err := ds.Validate(); err != nil {
			t.Fatalf("dataset does not validate: %v", err)
		}
	})
}
