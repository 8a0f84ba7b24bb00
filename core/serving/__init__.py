"""Serving: put a saved model to use on people's photos, and show where in each photo it looked.

One module per step, each importing only those before it::

    preprocessing   how a photo becomes a model input (a run's stretch, ImageNet's centre crop)
    classifiers     Classifier (model + class names + input size + preprocessing), from a file, a run or
                    the no-training ImageNet dog model; cached while the model file is unchanged
    inputs          uploads, paths, bytes and PIL images opened as upright RGB pictures
    classification  classify / iter_classify: batched top-k classes, a Result per input, never an exception
    grad_cam        where the model looked for a class, as a heatmap over the photo
    colour_maps     that heatmap in colour, blended over the photo
    cli             the command line, ``python -m core.serving --run RUN_ID photo.jpg folder/``

Models are loaded by ``core.models.load_saved_model``; scores become probabilities by
``core.probabilities``. Importing any module here does not import TensorFlow: that waits until a model is
loaded or called, so pages can import them.
"""
