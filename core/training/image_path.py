"""The image path: every image through the whole network every epoch, the notebook's way.

Scratch and fine-tune runs train this way, and frozen runs without the feature cache. The model is new
(scratch, frozen), the frozen parent's with its top layers unfrozen (fine-tune), or the run's last
checkpoint (resume); one ``fit`` over the image pipelines covers all the run's epochs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core import runs
from core.errors import RunError
from core.models import build_model, compile_model, load_saved_model, unfreeze_for_finetune
from core.training import keras_compat
from core.training.path import Fitting, Models, TrainingPath, check_classes, resumed_model
from core.training.pipelines import test_pipeline, training_pipeline

if TYPE_CHECKING:
    from core.data import Splits


class ImagePath(TrainingPath):
    """Fits the whole model on the image pipelines, in one segment."""

    def build(self, num_classes: int, done: int, jit_compile: bool | str) -> Models:
        if done:
            model = resumed_model(self.run_id, done, num_classes)
            return Models(saved=model, fitted=model)
        model_cfg = self.config.model
        unfrozen = None
        if model_cfg.regime == "finetune":
            parent = runs.get_run(model_cfg.parent_run_id)
            if parent.last_model is None:
                raise RunError(f"The frozen run “{parent.name}” has no saved model to fine-tune.")
            model = load_saved_model(parent.last_model, compile=False)
            check_classes(model, num_classes, f"The frozen run “{parent.name}”")
            unfrozen = unfreeze_for_finetune(model, model_cfg.unfreeze_top_layers, model_cfg.unfreeze_from_block)
        else:
            model = build_model(model_cfg, num_classes)
        compile_model(
            model, self.config.effective_learning_rate, self.config.effective_weight_decay, jit_compile=jit_compile
        )
        return Models(saved=model, fitted=model, unfrozen=unfrozen)

    def prepare(self, splits: Splits, done: int) -> Fitting:
        info, train_cfg = splits.info, self.config.train
        self._train = training_pipeline(
            splits.train,
            num_train=info.num_train,
            num_classes=info.num_classes,
            image_size=self.config.model.effective_image_size,
            batch_size=train_cfg.batch_size,
            augment=self.config.augment,
            seed=train_cfg.seed,
        )
        test = test_pipeline(splits.test, num_classes=info.num_classes, batch_size=train_cfg.batch_size)
        keras_compat.ignore_unknown_length_warning()
        return Fitting(test=test, num_train=info.num_train)

    def training_data(self, start: int, stop: int) -> Any:
        return self._train
