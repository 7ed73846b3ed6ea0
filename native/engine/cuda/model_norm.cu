// model_norm.cu: see model_ops_cuda.h (being written).
