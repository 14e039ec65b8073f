//! The isolation forest engine (Liu, Ting & Zhou, ICDM 2008), scored as scikit-learn's `IsolationForest`.
