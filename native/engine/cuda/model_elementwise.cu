// model_elementwise.cu: see model_ops_cuda.h (being written).
