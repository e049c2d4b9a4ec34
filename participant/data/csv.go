package data

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/accord-fl/accord/model"
)

// CSVTable is a CSV file's examples with the names of its columns and classes.
type CSVTable struct {
	// Data holds the examples; its labels index Classes.
	Data *model.Dataset
	// FeatureNames are the header names of the feature columns, in order.
	FeatureNames []string
	// Classes are the distinct label values, sorted; label i means Classes[i].
	Classes []string
}

// LoadCSV reads a CSV file with a header row. The column named labelColumn
// holds each row's class (any text; classes are the sorted distinct values);
// every other column must be numeric. Errors name the file, line and column.
func LoadCSV(path, labelColumn string) (*CSVTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCSV(f, path, labelColumn)
}

func readCSV(r io.Reader, path, labelColumn string) (*CSVTable, error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s is empty; want a header row", ErrFormat, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, err)
	}
	header = slices.Clone(header)
	labelAt := slices.Index(header, labelColumn)
	if labelAt < 0 {
		return nil, fmt.Errorf("%w: %s: no column named %q in the header (columns: %s)", ErrFormat, path, labelColumn, strings.Join(header, ", "))
	}
	if len(header) < 2 {
		return nil, fmt.Errorf("%w: %s: the header has no feature column besides %q", ErrFormat, path, labelColumn)
	}
	t := &CSVTable{FeatureNames: append(slices.Clone(header[:labelAt]), header[labelAt+1:]...)}
	features := len(header) - 1
	var x []float32
	var labels []string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFormat, path, err)
		}
		// Only now: after an error there may be no field 0, and FieldPos
		// panics.
		line, _ := cr.FieldPos(0)
		for col, field := range rec {
			if col == labelAt {
				labels = append(labels, field)
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(field), 32)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%w: %s:%d: column %q: %q is not a finite number", ErrFormat, path, line, header[col], field)
			}
			x = append(x, float32(v))
		}
	}
	if len(labels) == 0 {
		return nil, fmt.Errorf("%w: %s has a header but no rows", ErrFormat, path)
	}
	t.Classes = slices.Compact(slices.Sorted(slices.Values(labels)))
	if len(t.Classes) < 2 {
		return nil, fmt.Errorf("%w: %s: column %q has only one class (%q); need at least two", ErrFormat, path, labelColumn, t.Classes[0])
	}
	y := make([]int32, len(labels))
	for i, l := range labels {
		c, _ := slices.BinarySearch(t.Classes, l)
		y[i] = int32(c)
	}
	t.Data = &model.Dataset{X: x, Y: y, Features: features, Classes: len(t.Classes)}
	return t, nil
}

// Standardizer shifts and scales each feature to mean 0 and standard
// deviation 1 as measured on the data it was fitted to.
type Standardizer struct {
	Mean, Std []float32
}

// FitStandardizer measures each feature's mean and standard deviation on ds;
// fit it on the training split only. A constant feature gets Std 1.
func FitStandardizer(ds *model.Dataset) *Standardizer {
	d := ds.Features
	sum := make([]float64, d)
	sq := make([]float64, d)
	for i := range ds.Len() {
		for j, v := range ds.Row(i) {
			sum[j] += float64(v)
			sq[j] += float64(v) * float64(v)
		}
	}
	s := &Standardizer{Mean: make([]float32, d), Std: make([]float32, d)}
	n := float64(max(ds.Len(), 1))
	for j := range d {
		mean := sum[j] / n
		v := max(sq[j]/n-mean*mean, 0)
		s.Mean[j] = float32(mean)
		s.Std[j] = 1
		if sd := math.Sqrt(v); sd > 1e-12 {
			s.Std[j] = float32(sd)
		}
	}
	return s
}

// Apply standardises ds in place.
func (s *Standardizer) Apply(ds *model.Dataset) error {
	if ds.Features != len(s.Mean) {
		return fmt.Errorf("%w: standardizer fitted on %d features, dataset has %d", model.ErrShape, len(s.Mean), ds.Features)
	}
	for i := range ds.Len() {
		row := ds.Row(i)
		for j := range row {
			row[j] = (row[j] - s.Mean[j]) / s.Std[j]
		}
	}
	return nil
}
