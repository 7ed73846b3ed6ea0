// model_sample.cu: see model_ops_cuda.h (being written).
