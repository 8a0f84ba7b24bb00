"""Transfer Lab's logic: data, augmentation, models, training, runs, evaluation and prediction.

Nothing here imports Streamlit; TensorFlow is imported lazily inside functions so that the pages
can import configs and cheap helpers without paying TensorFlow's start-up cost.
"""
