// model_loss.cu: see model_ops_cuda.h (being written).
