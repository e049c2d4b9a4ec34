package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/accord-fl/accord/model"
)

func writeIDX(t *testing.T, path string, dims []uint32, data []byte) {
	t.Helper()
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0x08, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&buf, binary.BigEndian, d)
	}
	buf.Write(data)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	gz.Write(buf.Bytes())
	gz.Close()
}

func TestReadIDX(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.gz")
	writeIDX(t, good, []uint32{2, 3}, []byte{1, 2, 3, 4, 5, 6})
	idx, err := ReadIDX(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Dims) != 2 || idx.Dims[0] != 2 || idx.Dims[1] != 3 || !bytes.Equal(idx.Data, []byte{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("got dims %v data %v", idx.Dims, idx.Data)
	}
	short := filepath.Join(dir, "short.gz")
	writeIDX(t, short, []uint32{2, 3}, []byte{1, 2})
	if _, err := ReadIDX(short); !errors.Is(err, ErrFormat) {
		t.Errorf("truncated file: got %v; want ErrFormat", err)
	}
	huge := filepath.Join(dir, "huge.gz")
	writeIDX(t, huge, []uint32{1 << 20, 1 << 20}, nil)
	if _, err := ReadIDX(huge); !errors.Is(err, ErrFormat) {
		t.Errorf("file declaring 1 TiB: got %v; want ErrFormat", err)
	}
}

func TestLoadMNISTFromFolder(t *testing.T) {
	dir := t.TempDir()
	img := make([]byte, 3*28*28)
	img[0], img[28*28] = 255, 128
	for _, pre := range []string{"train", "t10k"} {
		writeIDX(t, filepath.Join(dir, pre+"-images-idx3-ubyte.gz"), []uint32{3, 28, 28}, img)
		writeIDX(t, filepath.Join(dir, pre+"-labels-idx1-ubyte.gz"), []uint32{3}, []byte{7, 0, 9})
	}
	t.Setenv(MNISTDirEnv, dir)
	train, test, err := LoadMNISTFromModule(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != 3 || test.Len() != 3 || train.Features != 784 || train.Y[0] != 7 {
		t.Fatalf("got %d/%d examples of %d features, first label %d", train.Len(), test.Len(), train.Features, train.Y[0])
	}
	if got, want := train.X[28*28], float32(128)/255; got != want {
		t.Errorf("pixel 128 scaled to %v; want %v", got, want)
	}
	t.Setenv(MNISTDirEnv, t.TempDir())
	if _, _, err := LoadMNISTFromModule(t.Context()); !errors.Is(err, ErrMNISTUnavailable) || !strings.Contains(err.Error(), MNISTDirEnv) {
		t.Errorf("empty folder: got %v; want ErrMNISTUnavailable naming %s", err, MNISTDirEnv)
	}
}

func TestLoadCSV(t *testing.T) {
	cases := []struct {
		name, body, wantErr string
	}{
		{"ok", "age,income,label\n30,1000,yes\n40,2000,no\n50,3000,yes\n", ""},
		{"missing label column", "age,income\n1,2\n", `no column named "label"`},
		{"not a number", "age,label,income\n30,yes,1000\n40,no,lots\n", `:3: column "income": "lots"`},
		{"NaN", "age,label\nNaN,yes\n1,no\n", `column "age": "NaN"`},
		{"ragged row", "age,label\n1,yes\n2\n", "wrong number of fields"},
		// FuzzReadCSV's find: a row that fails to parse has no field 0,
		// and asking for its position panicked.
		{"unterminated quote in a row", "age,label\n1,yes\n\"", "quoted-field"},
		{"one class", "age,label\n1,yes\n2,yes\n", "only one class"},
		{"no rows", "age,label\n", "no rows"},
		{"empty", "", "is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bank.csv")
			os.WriteFile(path, []byte(c.body), 0o600)
			table, err := LoadCSV(path, "label")
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "bank.csv") {
					t.Fatalf("got error %v; want one naming bank.csv and %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := table.Data.Validate(); err != nil {
				t.Fatal(err)
			}
			if table.Data.Len() != 3 || table.Data.Features != 2 || strings.Join(table.Classes, ",") != "no,yes" || table.Data.Y[0] != 1 {
				t.Fatalf("got %+v", table)
			}
		})
	}
}

func TestStandardizerFitsTrainOnly(t *testing.T) {
	train := &model.Dataset{X: []float32{1, 10, 3, 10, 5, 10}, Y: []int32{0, 1, 0}, Features: 2, Classes: 2}
	test := &model.Dataset{X: []float32{3, 20}, Y: []int32{1}, Features: 2, Classes: 2}
	s := FitStandardizer(train)
	if err := s.Apply(train); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(test); err != nil {
		t.Fatal(err)
	}
	// Feature 0: mean 3, std √(8/3); feature 1 is constant, so std 1.
	if test.X[0] != 0 || test.X[1] != 10 {
		t.Errorf("test row standardised with train statistics: got %v; want [0 10]", test.X)
	}
	if train.X[1] != 0 || train.X[0] >= 0 {
		t.Errorf("train rows: got %v", train.X)
	}
}

// TestDecodeIDXAllocatesOnlyWhatIsPresent: a header declaring a gigabyte
// with no data behind it is refused without allocating the gigabyte.
func TestDecodeIDXAllocatesOnlyWhatIsPresent(t *testing.T) {
	for _, c := range []struct {
		name string
		file []byte
	}{
		{"1 GiB declared, none present", idxBytes([]uint32{1 << 15, 1 << 15}, nil)},
		{"1 GiB declared, 1 KiB present", idxBytes([]uint32{1 << 15, 1 << 15}, make([]byte, 1024))},
	} {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := decodeIDX(bytes.NewReader(c.file))
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrFormat) {
				t.Errorf("got %v; want ErrFormat", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("allocated %d bytes for a file of %d", grew, len(c.file))
			}
		})
	}
}

// TestMNISTRefusesShapesWithoutExamples: images with a zero dimension make
// no dataset (they once made one of zero features).
func TestMNISTRefusesShapesWithoutExamples(t *testing.T) {
	for _, c := range []struct {
		name           string
		images, labels *IDX
	}{
		{"no pixels", &IDX{Dims: []int{2, 0, 28}}, &IDX{Dims: []int{2}, Data: []byte{1, 2}}},
		{"no examples", &IDX{Dims: []int{0, 28, 28}}, &IDX{Dims: []int{0}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := mnistDataset(c.images, c.labels, "images", "labels"); !errors.Is(err, ErrFormat) {
				t.Errorf("got %v; want ErrFormat", err)
			}
		})
	}
}
