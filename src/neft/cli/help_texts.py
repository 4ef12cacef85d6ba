"""Help texts shared by several commands' flags: what sigma means, and which models ``--model`` takes."""

SIGMA_HELP = "relative device variation sigma: std of each NVM device as a fraction of its conductance range"
MODEL_HELP = ("vgg8 | resnet18 | lenet5, or your own: package.module:function or path/to/nets.py:function, called "
              "with num_classes, in_channels (and width) (default: %(default)s)")
