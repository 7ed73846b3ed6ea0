// model_embed.cu: see model_ops_cuda.h (being written).
