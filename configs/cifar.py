r"""CIFAR-10 VGG16 features (.npy, 60,000 x 512) with their labels (.npy).

    python -m launch.main --config=configs/cifar.py:method=ssb_vae,bits=16 \
        --config.data.path=cifar_vgg16.npy \
        --config.data.labels_path=cifar_labels.npy --workdir=runs/cifar
"""

from configs import base


def get_config(arg=None):
  c, _ = base.study_config(arg, "cifar")
  c.batch_size = 200
  c.data.name = "features_npy"
  c.data.path = ""  # [items, 512] float features
  c.data.labels_path = ""  # [items] integer labels
  c.data.queries_per_class = 100  # query set: items drawn per class
  c.data.split_seed = 0  # the query draw
  return c
