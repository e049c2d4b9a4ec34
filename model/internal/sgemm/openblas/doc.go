// Package openblas is OpenBLAS's cblas_sgemm through cgo, for package sgemm:
// a package of its own because Go does not allow assembly (sgemm's
// kernels) in a package that uses cgo. It is empty unless built with the
// tag openblas and cgo (Debian's libopenblas-dev).
package openblas
