"""Help texts shared by several commands' flags: what sigma means, which models ``--model`` takes and the inits
``--init`` names."""

SIGMA_HELP = "relative device variation sigma: std of each NVM device as a fraction of its conductance range"
MODEL_HELP = ("vgg8 | resnet18 | lenet5, or your own: package.module:function or path/to/nets.py:function, called "
              "with num_classes, in_channels (and width) (default: %(default)s)")
INIT_HELP = ("weight init: kaiming (the release's Kaiming-normal fan_out), kaiming-uniform (the same std, smaller "
             "max|W|), torch (PyTorch's default layer init) or own (not re-initialised: your model keeps the init its "
             "own code gives it; for the zoo the same as torch) (default: kaiming for the zoo, own for your own "
             "model)")
