// Package model is Accord's trainer: model specifications, one flat parameter
// vector per model, deterministic initialisation, minibatch SGD (momentum,
// weight decay and the FedProx proximal term) and evaluation, all on whole
// minibatches with gonum's float32 BLAS (convolutions as im2col and one
// matrix product an example).
//
// # Specs
//
// A model is named by a spec string:
//
//	logreg:784-10          multinomial logistic regression
//	mlp:784-200-200-10     ReLU hidden layers, softmax output (FedAvg's "2NN")
//	cnn:28x28x1-c5x32-p2-c5x64-p2-f512-10
//	                       FedAvg's MNIST CNN (1,663,370 parameters)
//
// A cnn spec is cnn:HxWxC, then layers, then the number of classes. Its
// input rows are C×H×W images, channel-major (NCHW: [c][y][x] at
// c·H·W + y·W + x; MNIST's 784 pixels are 28x28x1). Its layers are, as a
// torch.nn.Sequential spells them:
//
//	cKxN   Conv2d(C, N, K, padding=K//2), ReLU   (K odd: "same" size, stride 1)
//	pS     MaxPool2d(S)                           (stride S, remainder dropped)
//	fN     Linear(in, N), ReLU                    (a Flatten before the first)
//	N      Linear(in, N), the last: the classes   (a Flatten before, if needed)
//
// Convolutions and pools come before any fully connected layer. A Spec is a
// list of layers (Conv, ReLU, MaxPool, Flatten, Dense) in the Sequential's
// order; Inputs() is H·W·C and Classes() the last number.
//
// # Parameter layout
//
// Every model's parameters are one []float32. Layers appear in order; a dense
// layer with In inputs and Out outputs stores its weight matrix first, In×Out
// row-major (element [i][o] at offset i·Out+o), then its Out biases. A
// convolution from C to N channels with K×K kernels stores its weights in
// PyTorch's nn.Conv2d order, [n][c][i][j] at ((n·C+c)·K+i)·K+j, then its N
// biases. A dense layer after a Flatten reads its inputs channel-major, as
// nn.Flatten does, so its input i = c·H·W + y·W + x. Activation, pooling
// and Flatten layers hold no parameters. WriteSafetensors writes the same
// values under a Sequential's state_dict names ("0.weight", "3.bias", …),
// dense weights transposed to nn.Linear's [out, in]. Aggregation, masking and the wire
// format therefore treat every model as one vector of Spec.NumParams() floats.
//
// # Kernels
//
// Matrix products go through gonum's blas32 package, whose Sgemm is replaced
// at start-up by the fastest kernel this build and CPU offer (see Backend).
package model
