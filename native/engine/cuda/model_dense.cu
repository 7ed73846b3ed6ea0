// model_dense.cu: see model_ops_cuda.h (being written).
