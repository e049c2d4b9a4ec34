// Package model is Accord's trainer: model specifications, one flat parameter
// vector per model, deterministic initialisation, minibatch SGD (momentum,
// weight decay and the FedProx proximal term) and evaluation, all on whole
// minibatches with gonum's float32 BLAS.
//
// # Specs
//
// A model is named by a spec string:
//
//	logreg:784-10          multinomial logistic regression
//	mlp:784-200-200-10     ReLU hidden layers, softmax output (FedAvg's "2NN")
//
// A Spec is a list of layers, so new layer kinds (convolution and pooling for
// the FedAvg CNN) are new entries in that list, not a new design.
//
// # Parameter layout
//
// Every model's parameters are one []float32. Layers appear in order; a dense
// layer with In inputs and Out outputs stores its weight matrix first, In×Out
// row-major (element [i][o] at offset i·Out+o), then its Out biases.
// Activation layers hold no parameters. Aggregation, masking and the wire
// format therefore treat every model as one vector of Spec.NumParams() floats.
//
// # Kernels
//
// Matrix products go through gonum's blas32 package, whose Sgemm is replaced
// at start-up by the fastest kernel this build and CPU offer (see Backend).
package model
