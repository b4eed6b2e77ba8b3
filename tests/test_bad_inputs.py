"""Bad inputs to every command, as a table: each ends in exit status 2, exactly one `error:` line naming the bad
value, no traceback, and nothing left behind that looks like a run.

Every case runs the command's own main in this process (tests/helpers.run_main). `RUN` in an argument is
replaced by a finished tiny run directory, `IMAGE` by a PNG file, `EMPTY` by an empty folder, `SPARSE` by an
image folder whose class 'square' has one training image (so one of 2 folds leaves it none), `LABELS` by a folder
of images with label files: good.csv, split.csv (line 3 says 'training'), ghost.csv (names a missing image),
`HF:KIND` by a Hugging Face save_to_disk folder with that mistake (tests/synthetic_hf.write_bad), `SETS` by a folder
of multi-label images with labels.csv (labels split by ' ', tests/synthetic_labelsets.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from cnntrain.commands import evaluate, export, lr_find, predict, reproduce, train

from helpers import TINY_RUN, assert_one_line_error, run_main
from synthetic_hf import write_bad
from synthetic_images import make_folder, make_labelled_images, write_label_file
from synthetic_labelsets import write_sets

MAINS = {
    "cnntrain": train.main,
    "cnntrain-eval": evaluate.main,
    "cnntrain-predict": predict.main,
    "cnntrain-export": export.main,
    "cnntrain-reproduce": reproduce.main,
    "cnntrain-lr-find": lr_find.main,
}

SETS = ["dataset=labels", "dataset.file=SETS/labels.csv", "model=cnn2"]  # a label file of image sets

CNNTRAIN = [
    # config groups, keys and types
    (["model=lenett"], "unknown model 'lenett' (did you mean 'lenet'?)"),
    (["dataset=fashon"], "unknown dataset 'fashon' (did you mean 'fashion'?)"),
    (["optimizer=adamm"], "unknown optimizer 'adamm' (did you mean 'adam'?)"),
    (["scheduler=cosin"], "unknown scheduler 'cosin' (did you mean 'cosine'?)"),
    (["experiment=speedrun"], "unknown experiment 'speedrun'"),
    (["trainer.epoch=3"], "unknown config key 'trainer.epoch' (did you mean 'trainer.epochs'?)"),
    (["+trainer.epoch=3"], "unknown config key 'trainer.epoch' (did you mean 'trainer.epochs'?)"),
    (["+dataset.rooot=1"], "unknown config key 'dataset.rooot' (did you mean 'dataset.root'?); keys of dataset: "),
    (["+model.layerz=[]"], "unknown config key 'model.layerz' (did you mean 'model.layers'?)"),
    (["optimizer.lr=fast"], "optimizer.lr=fast: expected a number"),
    (["trainer.epochs=two"], "trainer.epochs=two: expected a whole number"),
    (["trainer.progress=maybe"], "trainer.progress=maybe: expected true or false"),
    (["trainer.epochs=null"], "trainer.epochs=null: expected a value (it cannot be null)"),
    (["model.layers=conv2d"], "model.layers=conv2d: expected a list of layers"),
    (["model.layers=null"], "model.layers=null: expected a list of layers"),
    (["dataset.classes=abc"], "dataset.classes=abc: expected a list"),
    # ranges and choices
    (["trainer.epochs=0"], "trainer.epochs=0: must be > 0"),
    (["trainer.batch_size=-1"], "trainer.batch_size=-1: must be > 0"),
    (["trainer.eval_batch_size=0"], "trainer.eval_batch_size=0: must be > 0"),
    (["trainer.devices=0"], "trainer.devices=0: must be > 0"),
    (["-m", "--cfg", "hydra"], "--multirun and --cfg cannot be combined; give one of --run, --multirun, --cfg"),
    (["trainer.devices=4", "trainer.batch_size=2"], "trainer.batch_size=2: must be >= trainer.devices=4 (each device"),
    (
        ["trainer.devices=2", "trainer.sync_batchnorm=true", "device=cpu"],
        "trainer.sync_batchnorm=true needs CUDA devices (this run uses cpu)",
    ),
    (["trainer.devices=two"], "trainer.devices=two: expected a whole number"),
    (["trainer.label_smoothing=1.0"], "trainer.label_smoothing=1.0: must be in [0, 1)"),
    (["trainer.loss=mse"], "trainer.loss=mse: expected one of auto, cross_entropy, nll"),
    (["trainer.class_weights=[1,2]"], "trainer.class_weights=[1, 2]: 2 weight(s), but the dataset has 10 classes"),
    (
        ["trainer.class_weights=[1,1,1,1,1,1,1,1,1,-0.5]"],
        "trainer.class_weights=[1, 1, 1, 1, 1, 1, 1, 1, 1, -0.5]: weight -0.5 (class 9) is negative; every weight must",
    ),
    (
        ["trainer.class_weights=balance"],
        "trainer.class_weights=balance: unknown setting (did you mean 'balanced'?); expected null, balanced, or a list",
    ),
    (["trainer.class_weights=[a,b]"], "trainer.class_weights=['a', 'b']: expected null, balanced, or a list of one"),
    (
        ["trainer.sampler=balance"],
        "trainer.sampler=balance: unknown sampler 'balance' (did you mean 'balanced'?); "
        "expected one of shuffle, balanced",
    ),
    (["trainer.precision=fp8"], "trainer.precision=fp8: expected one of fp32, bf16, fp16"),
    (["trainer.tta=vflip"], "trainer.tta=vflip: expected one of none, hflip"),
    (["trainer.checkpoint.monitor=val/f1"], "trainer.checkpoint.monitor=val/f1: expected one of train/loss"),
    (["trainer.early_stopping.mode=up"], "trainer.early_stopping.mode=up: expected one of min, max"),
    (["trainer.early_stopping.patience=-1"], "trainer.early_stopping.patience=-1: must be >= 0"),
    (["device=tpu"], "device=tpu: expected one of auto, cpu, cuda, cuda:N, mps"),
    (["device=cuda:x"], "device=cuda:x: expected one of auto, cpu, cuda, cuda:N, mps"),
    (
        ["logger=wandbb"],
        "logger=wandbb: unknown logger 'wandbb' (did you mean 'wandb'?); expected one of csv, "
        "tensorboard, mlflow, wandb, or a list of them",
    ),
    (["logger=[csv,mlfow]"], "logger=[csv, mlfow]: unknown logger 'mlfow' (did you mean 'mlflow'?); expected one of"),
    (["logger=[[csv]]"], "logger=[['csv']]: expected one of csv, tensorboard, mlflow, wandb, or a list of them"),
    (["logger=null"], "logger=null: expected one of csv, tensorboard, mlflow, wandb, or a list of them"),
    (["-m", "logger=csv,mlflw"], "logger=mlflw: unknown logger 'mlflw' (did you mean 'mlflow'?)"),
    (["wandb.mode=onlin"], "wandb.mode=onlin: expected one of offline, online, or null"),
    (["wandb.projct=x"], "unknown config key 'wandb.projct' (did you mean 'wandb.project'?)"),
    (["mlflow.log_checkpoint=maybe"], "mlflow.log_checkpoint=maybe: expected true or false"),
    (
        ["logger=[csv,mlflow]", "mlflow.tracking_uri=htp:/x"],
        "mlflow.tracking_uri=htp:/x: unsupported scheme 'htp' (did you mean 'http'?)",
    ),
    (
        ["logger=mlflow", "mlflow.tracking_uri='file:///tmp/mlruns'"],
        "mlflow.tracking_uri=file:///tmp/mlruns: MLflow 3 no longer creates file stores",
    ),
    (["threads=0"], "threads=0: must be null or a whole number > 0"),
    (["threads=true"], "threads=True: must be null or a whole number > 0"),
    (["seed=99999999999999999999999"], "seed=99999999999999999999999: must be a whole number from 0 to 2**63 - 1"),
    (["optimizer.lr=inf"], "optimizer.lr=inf: must be a finite number"),
    (["trainer.early_stopping.min_delta=inf"], "trainer.early_stopping.min_delta=inf: must be a finite number"),
    (["~dataset=0"], "bad override: Config group override deletion value must be a string"),
    (["device=a\nb"], "cannot parse override 'device=a\\nb'"),  # a line break typed by the user, shown escaped
    (["model.dropout=1.5"], "model.dropout=1.5: must be in [0, 1)"),
    # optimizers and schedules
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1: must be > 0"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1.0: must be >= 0"),
    (["optimizer.betas=[0.9]"], "optimizer.betas=[0.9]: expected two numbers, each in [0, 1)"),
    (["optimizer.betas=[0.9,1.0]"], "optimizer.betas=[0.9, 1.0]: expected two numbers, each in [0, 1)"),
    (["optimizer.eps=0"], "optimizer.eps=0.0: must be > 0"),
    (["optimizer=sgd", "optimizer.momentum=-0.5"], "optimizer.momentum=-0.5: must be >= 0"),
    (
        ["optimizer=sgd", "optimizer.dampening=0.5"],
        "optimizer.nesterov=true needs optimizer.momentum > 0 and optimizer.dampening=0",
    ),
    (["optimizer=sgd", "optimizer.momentum=0"], "optimizer.nesterov=true needs optimizer.momentum > 0"),
    (["optimizer=rmsprop", "optimizer.alpha=-1"], "optimizer.alpha=-1.0: must be >= 0"),
    (["scheduler=step", "scheduler.gamma=-0.5"], "scheduler.gamma=-0.5: must be > 0"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0: must be > 0"),
    (["scheduler=cosine", "scheduler.eta_min=-1"], "scheduler.eta_min=-1.0: must be >= 0"),
    (
        ["trainer.epochs=2", "scheduler=cosine", "scheduler.warmup_epochs=5"],
        "scheduler.warmup_epochs=5.0: must be in [0, trainer.epochs)",
    ),
    (["scheduler=plateau", "scheduler.patience=-1"], "scheduler.patience=-1: must be >= 0"),
    (["scheduler=plateau", "scheduler.factor=1.5"], "scheduler.factor=1.5: must be in (0, 1)"),
    (["scheduler=plateau", "scheduler.monitor=val/f1"], "scheduler.monitor=val/f1: expected one of train/loss"),
    (["scheduler=onecycle", "scheduler.div_factor=0"], "scheduler.div_factor=0.0: must be > 0"),
    (["scheduler=onecycle", "scheduler.final_div_factor=-1"], "scheduler.final_div_factor=-1.0: must be > 0"),
    (["scheduler=onecycle", "scheduler.pct_start=1.0"], "scheduler.pct_start=1.0: must be in (0, 1)"),
    (["scheduler=onecycle", "scheduler.anneal_strategy=cubic"], "scheduler.anneal_strategy=cubic: expected one of"),
    (["scheduler=onecycle", "scheduler.max_lr=-1"], "scheduler.max_lr=-1.0: must be null (use optimizer.lr)"),
    # data
    (["dataset.val_split=1.5"], "dataset.val_split=1.5: a fraction must be in (0, 1)"),
    (["dataset.val_split=0"], "dataset.val_split=0: a count must be >= 1"),
    (["dataset.val_strategy=kfold"], "dataset.val_strategy=kfold: expected one of random, stratified"),
    (["dataset.folds=5", "dataset.fold=5"], "dataset.fold=5 is out of range for dataset.folds=5: use 0..4"),
    (["dataset.folds=3", "dataset.fold=-1"], "dataset.fold=-1 is out of range for dataset.folds=3: use 0..2"),
    (["dataset.folds=1", "dataset.fold=0"], "dataset.folds=1: must be >= 2 (the number of cross-validation folds)"),
    (["dataset.fold=0"], "dataset.fold=0 needs dataset.folds, the number of folds (>= 2)"),
    (["dataset.folds=3"], "dataset.folds=3 needs dataset.fold, the fold that validates (0..2)"),
    (["dataset=imagefolder", "dataset.root=EMPTY", "dataset.fold=1"], "dataset.fold=1 needs dataset.folds"),
    (["-m", "dataset.folds=3", "dataset.fold=0,1,3"], "dataset.fold=3 is out of range for dataset.folds=3"),
    (
        [
            "dataset=imagefolder",
            "dataset.root=SPARSE",
            "dataset.folds=2",
            "dataset.fold=0",
            "trainer.class_weights=balanced",
        ],
        "class 'square' has no images in the training split, and trainer.class_weights=balanced needs every class",
    ),
    (
        ["dataset=imagefolder", "dataset.root=SPARSE", "dataset.folds=2", "dataset.fold=0", "trainer.sampler=balanced"],
        "class 'square' has no images in the training split, and trainer.sampler=balanced needs every class",
    ),
    (["dataset.mean=[0.5,0.5]", "dataset.std=[0.2,0.2]"], "dataset.mean=[0.5, 0.5]: expected 1 value(s)"),
    (["dataset.std=[0]"], "dataset.std=[0.0]: every value must be > 0"),
    (["dataset.augment={translate: -1}"], "dataset.augment.translate=-1: must be >= 0 pixels"),
    (["dataset.augment={translate: 28}"], "dataset.augment.translate=28: must be smaller than the images' 28x28"),
    (["dataset.augment.translate=-1"], "dataset.augment.translate=-1: must be >= 0 pixels"),
    (
        ["dataset.augment.translate=28", "dataset.augment.hflip=true"],
        "dataset.augment.translate=28: must be smaller than the images' 28x28",
    ),
    (["dataset.augment.hflip=maybe"], "dataset.augment.hflip=maybe: expected true or false"),
    (["dataset.augment={translat: 2}"], "dataset.augment.translat: unknown key (did you mean 'translate'?)"),
    (["dataset.augment=[hflp]"], "dataset.augment: unknown augmentation 'hflp' (did you mean 'hflip'?)"),
    (["dataset.augment=[{mixup: {alpah: 1}}]"], "dataset.augment.mixup: unknown argument 'alpah' (did you mean"),
    (["dataset.augment=[{hflip: 1.5}]"], "dataset.augment.hflip.p=1.5: must be in [0, 1]"),
    (["dataset.augment=[{random_erasing: {p: -0.1}}]"], "dataset.augment.random_erasing.p=-0.1: must be in [0, 1]"),
    (
        ["dataset.augment=[{randaugment: {magnitude: 31}}]"],
        "dataset.augment.randaugment.magnitude=31: must be a whole number in 0..30 (num_magnitude_bins - 1)",
    ),
    (["dataset.augment=[{mixup: 0}]"], "dataset.augment.mixup.alpha=0: must be > 0"),
    (["dataset.augment=[{cutmix: -1.0}]"], "dataset.augment.cutmix.alpha=-1.0: must be > 0"),
    (
        ["dataset.augment=[{random_crop: 28}]"],
        "dataset.augment.random_crop.padding=28: must be smaller than the images' 28x28",
    ),
    (
        ["model=leaky-cnn3", "dataset.augment=[{mixup: 0.2}]"],
        "NLLLoss takes class indices, not mixed targets; use trainer.loss=cross_entropy "
        "and a model that ends in logits",
    ),
    (["dataset=imagefolder", "dataset.root=EMPTY", "dataset.num_workers=-1"], "dataset.num_workers=-1: must be >= 0"),
    (["dataset=imagefolder", "dataset.root=EMPTY", "dataset.channels=2"], "dataset.channels=2: expected 1, 3 or null"),
    (
        ["dataset=imagefolder", "dataset.root=EMPTY", "dataset.test_split=1"],
        "dataset.test_split=1.0: must be in (0, 1)",
    ),
    (["dataset=imagefolder", "dataset.root=EMPTY"], "/empty has 0 class folder(s); an image folder needs at least 2"),
    (
        ["dataset=imagefolder", "dataset.root=EMPTY", "dataset.resize=squash"],
        "dataset.resize=squash: expected one of stretch, crop, pad",
    ),
    (["dataset=imagefolder", "dataset.root=EMPTY", "dataset.cache_dir=IMAGE"], "digit.png: is a file, not a folder"),
    (["dataset.torchvision_class=Places365"], "dataset.torchvision_class 'Places365' is not supported"),
    (["dataset=emnist", "dataset.split=null"], "dataset.split=None: EMNIST needs one of byclass"),
    (["dataset=emnist", "dataset.split=digitz"], "dataset.split=digitz: EMNIST needs one of byclass"),
    (["dataset=imagefolder", "dataset.root=/no/such/folder"], "image folder /no/such/folder not found; expected"),
    (["dataset.download=false", "data_root=EMPTY"], "MNIST not found under"),
    (["dataset=labels", "dataset.file=null"], "dataset.file is not set: name a label file (.csv, .tsv, .jsonl or"),
    (
        ["dataset=labels", "dataset.file=LABELS/good.csv", "dataset.path_column=''"],
        "dataset.path_column is empty: name a column of the label file, or null",
    ),
    (
        ["dataset=labels", "dataset.file=LABELS/nope.csv"],
        "/nope.csv not found; set dataset.file to a .csv, .tsv, .jsonl, .ndjson file",
    ),
    (
        ["dataset=labels", "dataset.file=LABELS/labels.txt"],
        "/labels.txt: unknown format '.txt'; expected .csv, .tsv, .jsonl, .ndjson",
    ),
    (
        ["dataset=labels", "dataset.file=LABELS/good.csv", "dataset.label_column=klass"],
        "/good.csv: dataset.label_column=klass is not one of its columns (path, label, split)",
    ),
    (
        ["dataset=labels", "dataset.file=LABELS/split.csv"],
        "/split.csv, line 3: split is 'training'; expected one of train, val, valid, validation, test on every row",
    ),
    (["dataset=labels", "dataset.file=LABELS/ghost.csv"], "/ghost.png not found; relative paths are read from"),
    (
        ["dataset=labels", "dataset.file=LABELS/good.csv", "dataset.classes=[circle,cross]"],
        "label 'square' is not in dataset.classes (circle, cross) nor an index 0..1",
    ),
    (["dataset=huggingface"], "dataset.path is empty: give a folder written by save_to_disk"),
    (["dataset=huggingface", "dataset.path=/no/such/folder"], "dataset.path=/no/such/folder: no such folder; give"),
    (["dataset=huggingface", "dataset.path=EMPTY"], "/empty is not a Hugging Face dataset: no dataset_dict.json"),
    (
        ["dataset=huggingface", "dataset.path=HF:dict", "dataset.image_column=picture"],
        (
            "dataset.image_column=picture: /",
            "HF:dict has no such column; its columns: image (Image), label (ClassLabel)",
        ),
    ),
    (
        ["dataset=huggingface", "dataset.path=HF:dict", "dataset.label_column=image"],
        ("dataset.label_column=image: column 'image' of /", "HF:dict is Image; a label column holds a ClassLabel"),
    ),
    (
        ["dataset=huggingface", "dataset.path=HF:dict", "dataset.label_column=lbl"],
        ("dataset.label_column=lbl: /", "HF:dict has no such column; its columns: image (Image), label (ClassLabel)"),
    ),
    (
        ["dataset=huggingface", "dataset.path=HF:dict", "dataset.label_column=''"],
        "dataset.label_column is empty: name a column, or null",
    ),
    (
        ["dataset=huggingface", "dataset.path=HF:nopics"],
        "HF:nopics has no image column (no Image feature); its columns: label (ClassLabel), file (Value string); set "
        "dataset.image_column",
    ),
    (
        ["dataset=huggingface", "dataset.path=HF:nolabels"],
        "HF:nolabels has no label column (no ClassLabel feature, none named label/labels/target); its columns: image "
        "(Image), score (Value float64)",
    ),
    (
        ["dataset=huggingface", "dataset.path=HF:oneclass"],
        (
            "label column 'label' of /",
            "HF:oneclass has 1 class(es) in split 'train' (circle); a classifier needs at least 2",
        ),
    ),
    (
        ["dataset=huggingface", "dataset.path=HF:broken"],
        ("cannot read image in split 'train' of /", "HF:broken, row 0: cannot identify image file"),
    ),
    (
        ["dataset=huggingface", "dataset.path=HF:notrain"],
        "HF:notrain has split(s) validation, test but no train split (train, training)",
    ),
    (
        ["dataset=huggingface", "dataset.path=HF:dict", "dataset.skip_bad_images=true"],
        "unknown config key 'dataset.skip_bad_images'; keys of dataset: ",
    ),  # image files only (folders, label files)
    # multi-label data (SETS: a label file of image sets, tests/synthetic_labelsets.py)
    (
        [*SETS, "dataset.task=multilabel", "trainer.loss=nll"],
        "trainer.loss=nll takes one class per image, and dataset labels gives a set of labels per image",
    ),
    (
        [*SETS, "dataset.task=multilabel", "model.layers=[flatten,{linear: 3},log_softmax]"],
        "model 'cnn2' ends in log_softmax, and a multi-label model must end in logits",
    ),
    (
        [*SETS, "dataset.task=multilabel", "trainer.threshold=1.5"],
        "trainer.threshold=1.5: expected a probability in (0, 1) (0.5 is usual) or tune",
    ),
    (
        [*SETS, "dataset.task=multilabel", "trainer.threshold=0"],
        "trainer.threshold=0: expected a probability in (0, 1)",
    ),
    (
        [*SETS, "dataset.task=multilabel", "dataset.classes=[circle,cross]"],
        "/labels.csv, line 6: label 'square' is not in dataset.classes (circle, cross) nor an index 0..1",
    ),
    (
        [*SETS, "dataset.label_columns=[circle,dog]"],
        "/labels.csv: dataset.label_columns names 'circle', not one of its columns (path, labels)",
    ),
    (
        [*SETS, "dataset.task=single", "dataset.label_delimiter=';'"],
        "dataset.task=single but dataset.label_delimiter or dataset.label_columns is set",
    ),
    ([*SETS, "dataset.task=several"], "dataset.task=several: expected one of single, multilabel, or null"),
    (["+dataset.task=multilabel"], "dataset.task=multilabel but "),
    (["trainer.checkpoint.monitor=val/map"], "val/map is measured in multi-label runs only"),
    # webdataset shards (the shard files' own mistakes: tests/test_webdataset.py)
    (
        ["dataset=webdataset", "dataset.train=EMPTY/train-{000000..000009}.tar"],
        "quote a brace range for Hydra: \"dataset.train='",
    ),
    (["dataset=webdataset", "dataset.train='EMPTY/train-{000000..000009}.tar'"], "empty/train-000000.tar (from "),
    (["dataset=webdataset", "dataset.train=EMPTY/*.tar"], "dataset.train: no shard matches"),
    (["dataset=webdataset"], "dataset.train is empty: name the training shards"),
    (
        ["dataset=webdataset", "dataset.train=EMPTY/a.tar", "trainer.sampler=balanced"],
        "trainer.sampler=balanced draws with replacement, which a stream of shards cannot; use trainer.class_weights",
    ),
    (
        ["dataset=webdataset", "dataset.train=EMPTY/a.tar", "dataset.val_split=10"],
        "dataset.val_split=10: shards are split by key hash, so give a fraction",
    ),
    # models and losses
    (["model.layers=[{conv3d: 8}]"], "model 'lenet', layer 1: unknown layer 'conv3d' (did you mean 'conv2d'?)"),
    (["model.layers=[{conv2d: {out_channels: 4, kernel_size: 40}}]"], "input is 1x28x28, smaller than the kernel"),
    (["model.layers=[{conv2d: {out_channels: 4, kernal_size: 3}}]"], "unknown argument 'kernal_size'"),
    (["model.layers=[flatten,{linear: 5}]"], "model 'lenet' ends in 5 outputs, the dataset has 10 classes"),
    (["model.layers=[flatten,{linear: 20}]"], "model 'lenet' ends in 20 outputs, the dataset has 10 classes"),
    (["model.layers=[{conv2d: {out_channels: 4, kernel_size: 3}}]"], "ends in 4x26x26 outputs, not one score per"),
    (["model.layers=[flatten,{dropout: 2},{linear: 10}]"], "p must be a number in [0, 1), got 2"),
    (["model.layers=[{maxpool2d: 0},flatten,{linear: 10}]"], "kernel_size must be an integer >= 1"),
    (["trainer.loss=nll"], "trainer.loss=nll needs a model that ends in log_softmax, and model 'lenet' ends in"),
    # named architectures and fine-tuning
    (
        ["model=torchvision", "model.arch=resnet81"],
        "model 'resnet81', layer 1 (torchvision): unknown torchvision architecture 'resnet81' "
        "(did you mean 'resnet18'?)",
    ),
    (["model=timm", "model.arch=resnet81"], "unknown timm architecture 'resnet81' (did you mean"),
    (
        ["model=resnet18", "model.weights=DEFAUL"],
        "unknown weights 'DEFAUL' for resnet18 (did you mean 'DEFAULT'?); available: IMAGENET1K_V1, DEFAULT",
    ),
    (["model=timm", "model.weights=a1_in"], "unknown weights 'a1_in' for resnet18 (did you mean 'a1_in1k'?)"),
    (["model=resnet18", "model.weights=/no/such.pth"], "weights file /no/such.pth not found"),
    (
        ["model=resnet18", "model.resize=16", "model.small_input=false"],
        "input 1x16x16 is too small for resnet18: its downsampling reaches 1x1 before layer4.0.conv1; use small_input",
    ),
    (["model=resnet18", "model.small_input=maybe"], "small_input must be true, false or auto"),
    (["model=resnet18", "model.resize=0"], "resize must be auto (the weights' resolution), null, a size or"),
    (["model=resnet18", "model.normalize=imagenet"], "normalize must be weights (their mean/std) or data"),
    (["trainer.finetune.freeze_epochs=1"], "trainer.finetune needs a model with a pretrained backbone"),
    # why it fails: the analysis and its class activation maps
    (
        ["report.cam_layer=nope"],
        "report.cam_layer=nope: no such layer; candidates (the model summary's #): "
        "1 (conv2d, 20x24x24), 2 (relu, 20x24x24), 3 (maxpool2d, 20x12x12), "
        "4 (conv2d, 50x8x8), 5 (relu, 50x8x8), 6 (maxpool2d, 50x4x4)",
    ),
    (["model=cnn2", "report.cam_layer=conv_block"], "report.cam_layer=conv_block: several layers are called"),
    (["report.worst=-1"], "report.worst=-1: must be a whole number from 0 to 100"),
    (["report.calibration_bins=0"], "report.calibration_bins=0: must be a whole number from 1 to 1000"),
    (["report.calibration_bins=many"], "report.calibration_bins=many: expected a whole number"),
    # optimisation knobs
    (["trainer.accumulate=0"], "trainer.accumulate=0: must be > 0"),
    (["trainer.accumulate=-2"], "trainer.accumulate=-2: must be > 0"),
    (["trainer.ema.decay=1.0"], "trainer.ema.decay=1.0: must be in [0, 1) (0: no weight average; e.g. 0.999)"),
    (["trainer.ema.every=0"], "trainer.ema.every=0: must be > 0"),
    (["trainer.grad_clip=0"], "trainer.grad_clip=0: must be null (no clipping) or a number > 0"),
    (["trainer.grad_clip=-1.5"], "trainer.grad_clip=-1.5: must be null (no clipping) or a number > 0"),
    (["trainer.decay_norm_and_bias=sometimes"], "trainer.decay_norm_and_bias=sometimes: expected true or false"),
    (["trainer.finetune.freeze_epochs=-1"], "trainer.finetune.freeze_epochs=-1: must be >= 0"),
    (["trainer.finetune.backbone_lr=-1"], "trainer.finetune.backbone_lr=-1.0: must be >= 0"),
    (
        ["model=resnet18", "trainer.devices=2", "trainer.finetune.freeze_epochs=1"],
        "trainer.finetune.freeze_epochs=1: unfreezing during a data-parallel run (trainer.devices=2) is not supported",
    ),
    (["model=leaky-cnn3", "trainer.label_smoothing=0.1"], "trainer.label_smoothing=0.1 works with the cross_entropy"),
    # the command line itself
    (["--bogus"], "unknown flag '--bogus'; cnntrain takes KEY=VALUE overrides and the flags"),
    (["--multirn", "model=lenet"], "unknown flag '--multirn' (did you mean '--multirun'?)"),
    (["--cfg", "wrong"], "--cfg wrong: unknown value; expected one of job, hydra, all"),
    (["--cfg=wrong"], "--cfg wrong: unknown value"),
    (["--help=3"], "--help takes no value"),
    (["--config-dir", "/no/such/folder", "model=lenet"], "--config-dir /no/such/folder: no such folder"),
    (["=5"], "override '=5' has no key; write KEY=VALUE"),
    (["trainer.epochs"], "override 'trainer.epochs' has no value; write trainer.epochs=VALUE"),
    (["x=["], "cannot parse override 'x=['"),
    (["model=lenet,cnn2"], "lists several values; add -m to run a sweep"),
    # sweeps: every job is checked before the first starts
    (["-m", "model=lenet,cnn2", "trainer.epochs=1,0"], "trainer.epochs=0: must be > 0"),
    (["-m", "model=lenet,cnnx"], "unknown model 'cnnx'"),
    (["-m", "optimizer.lr=0.1,-1"], "optimizer.lr=-1.0: must be > 0"),
    (["-m", "--bogus", "model=lenet"], "unknown flag '--bogus'"),
    # resume
    (["resume=/no/such/run"], "resume=/no/such/run: no such run directory"),
    (["resume=RUN", "model=cnn2"], "continues one run with its saved config; drop -m and the other overrides"),
    (["resume=RUN"], "that run finished (its summary.json says done)"),
    (["resume=RUN", "trainer.devices=0"], "trainer.devices=0: expected a whole number >= 1"),
    (["resume=RUN", "trainer.devices=2", "trainer.devices=3"], "trainer.devices=3: expected a whole number >= 1"),
    (
        ["resume=RUN", "optimizer.lr=0.1"],
        "drop -m and the other overrides (optimizer.lr=0.1); only trainer.devices and the destinations (logger, "
        "mlflow.KEY, wandb.KEY, dataset.cache_dir) may change",
    ),
]

OTHER_COMMANDS = [
    ("cnntrain-eval", ["/no/such/run"], "run directory not found: /no/such/run"),
    ("cnntrain-eval", ["RUN", "--checkpoint", "middle"], "middle"),
    ("cnntrain-eval", ["RUN", "--batch-size", "0"], "--batch-size"),
    ("cnntrain-eval", ["RUN", "model.layers=[]"], "only dataset.KEY=VALUE and data_root=VALUE are allowed"),
    ("cnntrain-eval", ["RUN", "--device", "tpu"], "device=tpu: expected one of auto, cpu"),
    ("cnntrain-eval", ["RUN", "--bogus"], "cnntrain-eval: unrecognized arguments: --bogus"),
    ("cnntrain-eval", ["RUN", "dataset.val_split=7.5"], "dataset.val_split=7.5: a fraction must be in (0, 1)"),
    ("cnntrain-predict", ["RUN"], "cnntrain-predict: the following arguments are required: IMAGE"),
    ("cnntrain-predict", ["RUN", "/no/such/image.png"], "image not found: /no/such/image.png"),
    ("cnntrain-predict", ["RUN", "IMAGE", "--top-k", "0"], "--top-k=0: must be >= 1"),
    ("cnntrain-predict", ["RUN", "IMAGE", "--device", "tpu"], "device=tpu"),
    ("cnntrain-predict", ["RUN", "IMAGE", "--cam", "--cam-dir", "IMAGE"], "digit.png: exists and is not a folder"),
    ("cnntrain-export", ["RUN", "--format", "tflite"], "invalid choice: 'tflite'"),
    ("cnntrain-export", ["RUN"], "the following arguments are required: --format"),
    ("cnntrain-export", ["/no/such/run", "--format", "onnx"], "run directory not found"),
    ("cnntrain-reproduce", ["/no/such/run"], "is not a cnntrain run directory"),
    ("cnntrain-reproduce", ["RUN", "--bogus"], "cnntrain-reproduce: unrecognized arguments: --bogus"),
    ("cnntrain-lr-find", ["--steps", "2"], "--steps 2: the range test needs at least 5 steps"),
    ("cnntrain-lr-find", ["--min-lr", "1", "--max-lr", "0.1"], "--min-lr 1 --max-lr 0.1: need 0 < min-lr < max-lr"),
    ("cnntrain-lr-find", ["--out", "lr.jpg"], "--out lr.jpg: give a file name ending in .png"),
    ("cnntrain-lr-find", ["model=lenett"], "unknown model 'lenett' (did you mean 'lenet'?)"),
    ("cnntrain-lr-find", ["optimizer.lr=-1"], "optimizer.lr=-1.0: must be > 0"),
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, one_epoch_run) -> Path:
    """A copy of the session's one-epoch run: the tests check that a rejected command leaves it unchanged."""
    return shutil.copytree(one_epoch_run, tmp_path_factory.mktemp("finished") / "run")


@pytest.fixture
def place(tmp_path, finished_run):
    """Fill in RUN, IMAGE and EMPTY in a case's arguments."""
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    (tmp_path / "empty").mkdir()
    places = {
        "RUN": str(finished_run),
        "IMAGE": str(image),
        "EMPTY": str(tmp_path / "empty"),
        "SPARSE": str(tmp_path / "sparse"),
        "LABELS": str(tmp_path / "labels"),
        "SETS": str(tmp_path / "sets"),
    }

    def fill(args: list[str]) -> list[str]:
        if any("SPARSE" in arg for arg in args):
            make_folder(tmp_path / "sparse", rgb=False, size=16, per_class=4, test_per_class=1)
            for extra in sorted((tmp_path / "sparse" / "train" / "square").iterdir())[1:]:
                extra.unlink()
        if any("LABELS" in arg for arg in args):
            labels = tmp_path / "labels"
            rows = [
                {"path": path, "label": ("circle", "cross", "square")[index], "split": "train"}
                for path, index in make_labelled_images(labels, per_class=4, size=12)
            ]
            write_label_file(labels / "good.csv", rows)
            write_label_file(labels / "split.csv", [rows[0], {**rows[1], "split": "training"}, *rows[2:]])
            write_label_file(labels / "ghost.csv", [*rows, {**rows[0], "path": "ghost.png"}])
            (labels / "labels.txt").write_text("path\tlabel\n")
        if any("SETS" in arg for arg in args):
            write_sets(tmp_path / "sets", count=24, size=16)
        for name, value in places.items():
            args = [arg.replace(name, value) for arg in args]
        for kind in {arg.split("HF:")[1] for arg in args if "HF:" in arg}:
            write_bad(kind, tmp_path / f"HF:{kind}")
        return [arg.replace("HF:", str(tmp_path / "HF:")) for arg in args]

    return fill


@pytest.mark.parametrize(("args", "expected"), CNNTRAIN, ids=[" ".join(a) for a, _ in CNNTRAIN])
def test_cnntrain_mistake(tmp_path, monkeypatch, synthetic_data_root, place, args, expected):
    result = run_main(train.main, place(args), tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
    fragments = expected if isinstance(expected, tuple) else (expected,)  # a tuple: parts either side of a tmp path
    assert_one_line_error(result, *fragments, cwd=tmp_path)


@pytest.mark.parametrize(
    ("command", "args", "expected"), OTHER_COMMANDS, ids=[f"{c} {' '.join(a)}" for c, a, _ in OTHER_COMMANDS]
)
def test_other_command_mistake(
    tmp_path, monkeypatch, synthetic_data_root, place, finished_run, command, args, expected
):
    before = sorted(p.name for p in finished_run.rglob("*"))
    result = run_main(MAINS[command], place(args), tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
    assert_one_line_error(result, expected, cwd=tmp_path)
    assert sorted(p.name for p in finished_run.rglob("*")) == before, "a rejected command changed the run"


def test_the_table_is_large():
    assert len(CNNTRAIN) + len(OTHER_COMMANDS) >= 80


def test_cuda_mistakes_on_a_cpu_machine(tmp_path, monkeypatch, synthetic_data_root):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for args, expected in (
        (["device=cuda"], "device=cuda: CUDA is not available on this machine"),
        (["trainer.precision=fp16"], "trainer.precision=fp16 needs a CUDA device"),
    ):
        result = run_main(train.main, args, tmp_path, monkeypatch, CNNTRAIN_DATA_ROOT=str(synthetic_data_root))
        assert_one_line_error(result, expected, cwd=tmp_path)


def test_a_sweep_under_torchrun_is_refused(tmp_path, monkeypatch, synthetic_data_root):
    """torchrun's rank 0 (RANK and WORLD_SIZE set) refuses -m before it starts anything the other ranks wait for."""
    result = run_main(
        train.main,
        ["-m", "model=lenet,cnn2"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
        RANK="0",
        WORLD_SIZE="2",
        LOCAL_RANK="0",
    )
    assert_one_line_error(
        result,
        "torchrun starts the ranks of one run; for a sweep of data-parallel jobs run cnntrain -m trainer.devices=N",
        cwd=tmp_path,
    )


def test_a_model_file_in_config_dir_that_shadows_a_preset_is_refused(tmp_path, monkeypatch, synthetic_data_root):
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "lenet.yaml").write_text("name: lenet\nlayers: [flatten, {linear: 10}]\n")
    result = run_main(
        train.main,
        ["-cd", str(tmp_path / "mine"), "model=lenet"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert_one_line_error(result, "model/lenet.yaml has the name of a built-in model", cwd=tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: mine\nlayers:\n  - flatten\n\t- linear: 10\n", "mine.yaml line 4"),
        ("name: mine\nlayers: [flatten, {linear: 10}\n", "mine.yaml line"),
        ("- flatten\n- linear: 10\n", "mine.yaml must hold a mapping"),
        ("just words\n", "mine.yaml must hold a mapping"),
    ],
)
def test_a_model_file_that_does_not_parse_is_named(tmp_path, monkeypatch, synthetic_data_root, text, expected):
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "mine.yaml").write_text(text)
    result = run_main(
        train.main,
        ["-cd", str(tmp_path / "mine"), "model=mine"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert_one_line_error(result, expected, cwd=tmp_path)


def test_an_error_found_inside_the_run_leaves_a_failed_summary(tmp_path, monkeypatch, synthetic_data_root):
    """The synthetic train split has 1,200 images: a 5,000-image validation split is found out only when the
    data is read, after Hydra made the run directory. That directory must not look like a run to resume."""
    run_dir = tmp_path / "run"
    result = run_main(
        train.main,
        [*TINY_RUN, "dataset.val_split=5000", f"hydra.run.dir='{run_dir}'"],
        tmp_path,
        monkeypatch,
        CNNTRAIN_DATA_ROOT=str(synthetic_data_root),
    )
    assert_one_line_error(result, "dataset.val_split=5000")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "dataset.val_split=5000" in summary["error"]
    assert not (run_dir / "checkpoints").exists()
    shutil.rmtree(run_dir)


def test_undecodable_images_are_one_line_naming_the_first_and_counting_the_rest(tmp_path, monkeypatch):
    """Found when the images are decoded, inside the run (the preflight reads one image): a failed summary, as
    above, and one line naming the first bad file, "and N more", and the flag that skips them."""
    root = make_folder(tmp_path / "broken", rgb=False, size=16, per_class=4)
    for name in ("circle", "cross", "square"):
        (root / "train" / name / "bad.png").write_bytes(b"not a png")
    run_dir = tmp_path / "run"
    result = run_main(
        train.main,
        [*TINY_RUN, "dataset=imagefolder", f"dataset.root={root}", f"hydra.run.dir='{run_dir}'"],
        tmp_path,
        monkeypatch,
    )
    assert_one_line_error(
        result,
        f"cannot read image {root / 'train' / 'circle' / 'bad.png'}",
        "and 2 more",
        "dataset.skip_bad_images=true",
    )
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    assert not (run_dir / "checkpoints").exists()


def test_gpu_settings_for_cluster_nodes_are_not_checked_against_this_machine(monkeypatch, synthetic_data_root):
    """device=cuda on a login node without GPUs is fine when SLURM or Ray runs the jobs elsewhere; the same
    command for this machine is refused."""
    from cnntrain.commands.preflight import parse_overrides, preflight, runs_elsewhere
    from cnntrain.errors import DeviceError

    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.setenv("CNNTRAIN_DATA_ROOT", str(synthetic_data_root))
    if not torch.cuda.is_available():
        job = ["device=cuda", "trainer.devices=4", "model=lenet,cnn2"]
        assert len(preflight(["hydra/launcher=slurm", *job], multirun=True).configs) == 2
        with pytest.raises(DeviceError, match="CUDA is not available on this machine"):
            preflight(job, multirun=True)

    assert runs_elsewhere(parse_overrides(["hydra/launcher=slurm", "device=cuda"]))
    assert runs_elsewhere(parse_overrides(["hydra/launcher=ray_cluster"]))
    assert not runs_elsewhere(parse_overrides(["hydra/launcher=local_parallel", "device=cuda"]))
    assert not runs_elsewhere(parse_overrides(["device=cuda"]))
