"""Training: one run, from its stored config to recorded epochs and saved models.

::

    cli            python -m core.training: flags -> a checked RunConfig -> engine.train_foreground
    worker         python -m core.training.worker --run-id ID: a background run (core.runs.start_run);
                   RunGuard watches the store beside it, end_worker ends the process
        |
    engine         the run skeleton: execute (records how a run ends), train_foreground, train (strategy
                   scope, callbacks, checkpoints, recorder, TensorBoard, stops, resume, outcome)
        |  asks a path (path.TrainingPath) only for what differs: models, data per segment of epochs
        +-- image_path      every image through the whole network; one fit (uses pipelines)
        +-- cached_features a frozen run's head on features from core.feature_cache, fitted segment
                            by segment, saving the whole model
    path           the path interface (Models, Fitting, StopRequested) and the resumed model both use
    pipelines      the image path's tf.data pipelines; batches per epoch (both paths)
    callbacks      RunRecorder, EpochCheckpoint, EpochReporter, tensorboard_logger
    checkpoints    model_last / model_best with the note of the epoch they hold (no TensorFlow)
    keras_compat   every Keras/TensorFlow workaround, each saying how to check it is still needed

Importing this package (or ``cli``) does not import TensorFlow; every other module here does, except
``checkpoints`` and ``path``. The feature cache itself (keys, on-disk store, extraction) is
``core.feature_cache``, which the Home page uses without training.
"""
