// (being written: the backward ops of the VQ tokenizer, vq/conv_ops.h)
namespace cb {}
