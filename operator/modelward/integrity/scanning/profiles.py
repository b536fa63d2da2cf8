"""Trusted-type profiles: the classes ordinary scikit-learn, XGBoost and LightGBM pickles need.

In the spirit of skops' trusted types: a profile lists estimator classes whose *unpickling*
cannot execute arbitrary code, each checked one by one (how: docs/integrity.md, "Trusted-type
profiles"; the checks are re-run against the installed libraries by
``tests/unit/integrity/scanning/test_profiles.py``). Names are exact (module + qualified
name, as pickle writes them for the library versions named in :data:`VETTED_AGAINST`); a
class that moved to another private module in another version is reported as
``unknown-global`` and can be added with the policy's ``allowedGlobals``.

Each name is allowed for one *use* only, and the pickle walker enforces it:

``class``
    created the way pickle creates a plain object, ``cls.__new__(cls)`` (``NEWOBJ`` or
    ``copyreg._reconstructor``), then ``BUILD``: ``__new__`` is ``object.__new__`` and
    ``__setstate__`` only updates ``__dict__`` (or is reviewed in :data:`REVIEWS`).
    *Calling* such a class (``REDUCE``/``OBJ``/``INST``) runs its ``__init__`` with
    arguments the file chooses (``Booster(model_file=...)`` reads a file), which no library
    writes: a ``trusted-type-misuse`` finding.
``callable``
    reviewed to be harmless whatever the arguments (Cython types whose ``__reduce__`` calls
    them with their shape, ``newObj`` helpers, NumPy scalar types): see :data:`REVIEWS`.
``reference``
    a function stored as an attribute (``score_func=f_classif``): it may be imported but
    never called while loading.

What a profile cannot vouch for: the *content* of the objects it lets through (tree node
indices, native model buffers parsed by XGBoost/LightGBM). That content is what the
signature vouches for; the scan only guarantees that loading runs no code of the file's
choosing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

Use = Literal["class", "callable", "reference"]

#: The library versions the names were checked against (the test re-checks installed ones).
VETTED_AGAINST: Final = {"scikit-learn": "1.9.1", "xgboost": "3.2.0", "lightgbm": "4.7.0"}

#: Every public scikit-learn estimator (``sklearn.utils.all_estimators()``): subclasses of
#: ``BaseEstimator`` with ``object.__new__``, ``object.__reduce_ex__`` and
#: ``BaseEstimator.__setstate__`` (a version check, then ``__dict__.update``), except the
#: ones reviewed in :data:`REVIEWS`.
SKLEARN_ESTIMATORS: Final[tuple[str, ...]] = (
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.cluster._affinity_propagation.AffinityPropagation",
    "sklearn.cluster._agglomerative.AgglomerativeClustering",
    "sklearn.cluster._agglomerative.FeatureAgglomeration",
    "sklearn.cluster._bicluster.SpectralBiclustering",
    "sklearn.cluster._bicluster.SpectralCoclustering",
    "sklearn.cluster._birch.Birch",
    "sklearn.cluster._bisect_k_means.BisectingKMeans",
    "sklearn.cluster._dbscan.DBSCAN",
    "sklearn.cluster._hdbscan.hdbscan.HDBSCAN",
    "sklearn.cluster._kmeans.KMeans",
    "sklearn.cluster._kmeans.MiniBatchKMeans",
    "sklearn.cluster._mean_shift.MeanShift",
    "sklearn.cluster._optics.OPTICS",
    "sklearn.cluster._spectral.SpectralClustering",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.compose._target.TransformedTargetRegressor",
    "sklearn.covariance._elliptic_envelope.EllipticEnvelope",
    "sklearn.covariance._empirical_covariance.EmpiricalCovariance",
    "sklearn.covariance._graph_lasso.GraphicalLasso",
    "sklearn.covariance._graph_lasso.GraphicalLassoCV",
    "sklearn.covariance._robust_covariance.MinCovDet",
    "sklearn.covariance._shrunk_covariance.LedoitWolf",
    "sklearn.covariance._shrunk_covariance.OAS",
    "sklearn.covariance._shrunk_covariance.ShrunkCovariance",
    "sklearn.cross_decomposition._pls.CCA",
    "sklearn.cross_decomposition._pls.PLSCanonical",
    "sklearn.cross_decomposition._pls.PLSRegression",
    "sklearn.cross_decomposition._pls.PLSSVD",
    "sklearn.decomposition._dict_learning.DictionaryLearning",
    "sklearn.decomposition._dict_learning.MiniBatchDictionaryLearning",
    "sklearn.decomposition._dict_learning.SparseCoder",
    "sklearn.decomposition._factor_analysis.FactorAnalysis",
    "sklearn.decomposition._fastica.FastICA",
    "sklearn.decomposition._incremental_pca.IncrementalPCA",
    "sklearn.decomposition._kernel_pca.KernelPCA",
    "sklearn.decomposition._lda.LatentDirichletAllocation",
    "sklearn.decomposition._nmf.MiniBatchNMF",
    "sklearn.decomposition._nmf.NMF",
    "sklearn.decomposition._pca.PCA",
    "sklearn.decomposition._sparse_pca.MiniBatchSparsePCA",
    "sklearn.decomposition._sparse_pca.SparsePCA",
    "sklearn.decomposition._truncated_svd.TruncatedSVD",
    "sklearn.discriminant_analysis.LinearDiscriminantAnalysis",
    "sklearn.discriminant_analysis.QuadraticDiscriminantAnalysis",
    "sklearn.dummy.DummyClassifier",
    "sklearn.dummy.DummyRegressor",
    "sklearn.ensemble._bagging.BaggingClassifier",
    "sklearn.ensemble._bagging.BaggingRegressor",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.RandomTreesEmbedding",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.ensemble._stacking.StackingClassifier",
    "sklearn.ensemble._stacking.StackingRegressor",
    "sklearn.ensemble._voting.VotingClassifier",
    "sklearn.ensemble._voting.VotingRegressor",
    "sklearn.ensemble._weight_boosting.AdaBoostClassifier",
    "sklearn.ensemble._weight_boosting.AdaBoostRegressor",
    "sklearn.feature_extraction._dict_vectorizer.DictVectorizer",
    "sklearn.feature_extraction._hash.FeatureHasher",
    "sklearn.feature_extraction.image.PatchExtractor",
    "sklearn.feature_extraction.text.CountVectorizer",
    "sklearn.feature_extraction.text.HashingVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.feature_selection._from_model.SelectFromModel",
    "sklearn.feature_selection._rfe.RFE",
    "sklearn.feature_selection._rfe.RFECV",
    "sklearn.feature_selection._sequential.SequentialFeatureSelector",
    "sklearn.feature_selection._univariate_selection.GenericUnivariateSelect",
    "sklearn.feature_selection._univariate_selection.SelectFdr",
    "sklearn.feature_selection._univariate_selection.SelectFpr",
    "sklearn.feature_selection._univariate_selection.SelectFwe",
    "sklearn.feature_selection._univariate_selection.SelectKBest",
    "sklearn.feature_selection._univariate_selection.SelectPercentile",
    "sklearn.feature_selection._variance_threshold.VarianceThreshold",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.gaussian_process._gpc.GaussianProcessClassifier",
    "sklearn.gaussian_process._gpr.GaussianProcessRegressor",
    "sklearn.impute._base.MissingIndicator",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.impute._knn.KNNImputer",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.kernel_approximation.AdditiveChi2Sampler",
    "sklearn.kernel_approximation.Nystroem",
    "sklearn.kernel_approximation.PolynomialCountSketch",
    "sklearn.kernel_approximation.RBFSampler",
    "sklearn.kernel_approximation.SkewedChi2Sampler",
    "sklearn.kernel_ridge.KernelRidge",
    "sklearn.linear_model._base.LinearRegression",
    "sklearn.linear_model._bayes.ARDRegression",
    "sklearn.linear_model._bayes.BayesianRidge",
    "sklearn.linear_model._coordinate_descent.ElasticNet",
    "sklearn.linear_model._coordinate_descent.ElasticNetCV",
    "sklearn.linear_model._coordinate_descent.Lasso",
    "sklearn.linear_model._coordinate_descent.LassoCV",
    "sklearn.linear_model._coordinate_descent.MultiTaskElasticNet",
    "sklearn.linear_model._coordinate_descent.MultiTaskElasticNetCV",
    "sklearn.linear_model._coordinate_descent.MultiTaskLasso",
    "sklearn.linear_model._coordinate_descent.MultiTaskLassoCV",
    "sklearn.linear_model._glm.glm.GammaRegressor",
    "sklearn.linear_model._glm.glm.PoissonRegressor",
    "sklearn.linear_model._glm.glm.TweedieRegressor",
    "sklearn.linear_model._huber.HuberRegressor",
    "sklearn.linear_model._least_angle.Lars",
    "sklearn.linear_model._least_angle.LarsCV",
    "sklearn.linear_model._least_angle.LassoLars",
    "sklearn.linear_model._least_angle.LassoLarsCV",
    "sklearn.linear_model._least_angle.LassoLarsIC",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._logistic.LogisticRegressionCV",
    "sklearn.linear_model._omp.OrthogonalMatchingPursuit",
    "sklearn.linear_model._omp.OrthogonalMatchingPursuitCV",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveClassifier",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveRegressor",
    "sklearn.linear_model._perceptron.Perceptron",
    "sklearn.linear_model._quantile.QuantileRegressor",
    "sklearn.linear_model._ransac.RANSACRegressor",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._ridge.RidgeCV",
    "sklearn.linear_model._ridge.RidgeClassifier",
    "sklearn.linear_model._ridge.RidgeClassifierCV",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._stochastic_gradient.SGDOneClassSVM",
    "sklearn.linear_model._stochastic_gradient.SGDRegressor",
    "sklearn.linear_model._theil_sen.TheilSenRegressor",
    "sklearn.manifold._classical_mds.ClassicalMDS",
    "sklearn.manifold._isomap.Isomap",
    "sklearn.manifold._locally_linear.LocallyLinearEmbedding",
    "sklearn.manifold._mds.MDS",
    "sklearn.manifold._spectral_embedding.SpectralEmbedding",
    "sklearn.manifold._t_sne.TSNE",
    "sklearn.mixture._bayesian_mixture.BayesianGaussianMixture",
    "sklearn.mixture._gaussian_mixture.GaussianMixture",
    "sklearn.model_selection._classification_threshold.FixedThresholdClassifier",
    "sklearn.model_selection._classification_threshold.TunedThresholdClassifierCV",
    "sklearn.model_selection._search.GridSearchCV",
    "sklearn.model_selection._search.RandomizedSearchCV",
    "sklearn.multiclass.OneVsOneClassifier",
    "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.multiclass.OutputCodeClassifier",
    "sklearn.multioutput.ClassifierChain",
    "sklearn.multioutput.MultiOutputClassifier",
    "sklearn.multioutput.MultiOutputRegressor",
    "sklearn.multioutput.RegressorChain",
    "sklearn.naive_bayes.BernoulliNB",
    "sklearn.naive_bayes.CategoricalNB",
    "sklearn.naive_bayes.ComplementNB",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.naive_bayes.MultinomialNB",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._classification.RadiusNeighborsClassifier",
    "sklearn.neighbors._graph.KNeighborsTransformer",
    "sklearn.neighbors._graph.RadiusNeighborsTransformer",
    "sklearn.neighbors._kde.KernelDensity",
    "sklearn.neighbors._lof.LocalOutlierFactor",
    "sklearn.neighbors._nca.NeighborhoodComponentsAnalysis",
    "sklearn.neighbors._nearest_centroid.NearestCentroid",
    "sklearn.neighbors._regression.KNeighborsRegressor",
    "sklearn.neighbors._regression.RadiusNeighborsRegressor",
    "sklearn.neighbors._unsupervised.NearestNeighbors",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
    "sklearn.neural_network._rbm.BernoulliRBM",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.Binarizer",
    "sklearn.preprocessing._data.KernelCenterer",
    "sklearn.preprocessing._data.MaxAbsScaler",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.Normalizer",
    "sklearn.preprocessing._data.PowerTransformer",
    "sklearn.preprocessing._data.QuantileTransformer",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._discretization.KBinsDiscretizer",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.preprocessing._label.MultiLabelBinarizer",
    "sklearn.preprocessing._polynomial.PolynomialFeatures",
    "sklearn.preprocessing._polynomial.SplineTransformer",
    "sklearn.preprocessing._target_encoder.TargetEncoder",
    "sklearn.random_projection.GaussianRandomProjection",
    "sklearn.random_projection.SparseRandomProjection",
    "sklearn.semi_supervised._label_propagation.LabelPropagation",
    "sklearn.semi_supervised._label_propagation.LabelSpreading",
    "sklearn.semi_supervised._self_training.SelfTrainingClassifier",
    "sklearn.svm._classes.LinearSVC",
    "sklearn.svm._classes.LinearSVR",
    "sklearn.svm._classes.NuSVC",
    "sklearn.svm._classes.NuSVR",
    "sklearn.svm._classes.OneClassSVM",
    "sklearn.svm._classes.SVC",
    "sklearn.svm._classes.SVR",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._classes.ExtraTreeRegressor",
)

#: scikit-learn's internal plain classes that fitted estimators hold (same checks).
SKLEARN_INTERNAL_CLASSES: Final[tuple[str, ...]] = (
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.HalfLogitLink",
    "sklearn._loss.link.MultinomialLogit",
    *(
        f"sklearn._loss.loss.{n}"
        for n in (
            "AbsoluteError",
            "ExponentialLoss",
            "HalfBinomialLoss",
            "HalfGammaLoss",
            "HalfMultinomialLoss",
            "HalfPoissonLoss",
            "HalfSquaredError",
            "HalfTweedieLoss",
            "HalfTweedieLossIdentity",
            "HuberLoss",
            "PinballLoss",
        )
    ),
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.cluster._birch._CFNode",
    "sklearn.cluster._birch._CFSubcluster",
    "sklearn.cluster._bisect_k_means._BisectingTree",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
    *(
        f"sklearn.gaussian_process.kernels.{n}"
        for n in (
            "CompoundKernel",
            "ConstantKernel",
            "DotProduct",
            "ExpSineSquared",
            "Exponentiation",
            "Matern",
            "PairwiseKernel",
            "Product",
            "RBF",
            "RationalQuadratic",
            "Sum",
            "WhiteKernel",
        )
    ),
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
)

#: Cython extension types pickled by ``__reduce__`` (so *called* while loading) and helpers.
SKLEARN_CALLABLES: Final[tuple[str, ...]] = (
    "sklearn.tree._tree.Tree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._kd_tree.newObj",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._ball_tree.newObj",
    "sklearn.metrics._dist_metrics.newObj",
    *(
        f"sklearn.metrics._dist_metrics.{n}{bits}"
        for n in (
            "EuclideanDistance",
            "SEuclideanDistance",
            "ManhattanDistance",
            "ChebyshevDistance",
            "MinkowskiDistance",
            "MahalanobisDistance",
            "HammingDistance",
            "CanberraDistance",
            "BrayCurtisDistance",
            "JaccardDistance",
            "MatchingDistance",
            "DiceDistance",
            "KulsinskiDistance",
            "RogersTanimotoDistance",
            "RussellRaoDistance",
            "SokalMichenerDistance",
            "SokalSneathDistance",
            "HaversineDistance",
        )
        for bits in ("64", "32")
    ),
    *(
        f"sklearn._loss._loss.Cy{n}"
        for n in (
            "AbsoluteError",
            "ExponentialLoss",
            "HalfBinomialLoss",
            "HalfGammaLoss",
            "HalfMultinomialLoss",
            "HalfPoissonLoss",
            "HalfSquaredError",
            "HalfTweedieLoss",
            "HalfTweedieLossIdentity",
            "HuberLoss",
            "PinballLoss",
        )
    ),
    *(
        f"sklearn.linear_model._sgd_fast.{n}"
        for n in (
            "Hinge",
            "SquaredHinge",
            "ModifiedHuber",
            "EpsilonInsensitive",
            "SquaredEpsilonInsensitive",
        )
    ),
    "numpy.random.bit_generator.SeedSequence",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    *(f"numpy.{n}" for n in ("float64", "float32", "float16", "int64", "int32", "int16", "int8")),
    *(f"numpy.{n}" for n in ("uint8", "uint16", "uint32", "uint64", "bool_", "str_", "bytes_")),
)

#: Functions estimators store as parameters (never called while loading).
SKLEARN_REFERENCES: Final[tuple[str, ...]] = (
    *(
        f"sklearn.feature_selection._univariate_selection.{n}"
        for n in ("f_classif", "f_regression", "chi2", "r_regression")
    ),
    "sklearn.feature_selection._mutual_info.mutual_info_classif",
    "sklearn.feature_selection._mutual_info.mutual_info_regression",
    "sklearn.cluster._kmeans._kmeans_single_lloyd",
    "sklearn.cluster._kmeans._kmeans_single_elkan",
    "numpy.mean",
    "numpy.median",
    "numpy.max",
    "numpy.min",
    "numpy.sum",
)

XGBOOST_CLASSES: Final[tuple[str, ...]] = (
    "xgboost.core.Booster",
    *(
        f"xgboost.sklearn.{n}"
        for n in (
            "XGBModel",
            "XGBClassifier",
            "XGBRegressor",
            "XGBRanker",
            "XGBRFClassifier",
            "XGBRFRegressor",
        )
    ),
)

LIGHTGBM_CLASSES: Final[tuple[str, ...]] = (
    "lightgbm.basic.Booster",
    *(
        f"lightgbm.sklearn.{n}"
        for n in ("LGBMModel", "LGBMClassifier", "LGBMRegressor", "LGBMRanker")
    ),
    # LGBMClassifier keeps scikit-learn's label encoder (same checks as the sklearn profile)
    "sklearn.preprocessing._label.LabelEncoder",
)

#: How each class with its own ``__new__``/``__setstate__``, and each callable, was checked.
REVIEWS: Final[Mapping[str, str]] = {
    "sklearn.isotonic.IsotonicRegression": "__setstate__ calls BaseEstimator.__setstate__, "
    "then rebuilds its interpolation function from its own arrays (scipy interp1d): no "
    "callable comes from the file",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveClassifier": "__new__ is the "
    "@deprecated wrapper: it emits a FutureWarning and calls object.__new__",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveRegressor": "__new__ is the "
    "@deprecated wrapper: it emits a FutureWarning and calls object.__new__",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": "__setstate__ updates "
    "__dict__ and casts its node array to the platform's intp; like skops we note that "
    "crafted node indices can crash inference (content, vouched for by the signature)",
    "sklearn.tree._tree.Tree": "Cython type; __cinit__(n_features, n_classes, n_outputs) "
    "allocates arrays, __setstate__ copies node/value arrays after checking their dtype and "
    "shape; no callable is taken from the arguments",
    "sklearn.neighbors._kd_tree.KDTree": "Cython type; __reduce__ is (newObj, (KDTree,), "
    "state) and __setstate__ copies arrays and rebuilds its DistanceMetric via "
    "DistanceMetric.get_metric (a name looked up in a fixed table)",
    "sklearn.neighbors._ball_tree.BallTree": "as KDTree",
    "sklearn.neighbors._kd_tree.newObj": "returns obj.__new__(obj); obj must itself be an "
    "allowed global, each of which is a data constructor",
    "sklearn.neighbors._ball_tree.newObj": "as sklearn.neighbors._kd_tree.newObj",
    "sklearn.metrics._dist_metrics.newObj": "as sklearn.neighbors._kd_tree.newObj",
    "sklearn.metrics._dist_metrics.*Distance64/32": "Cython types; __reduce__ is (newObj, "
    "(cls,), state), __setstate__ copies p, vec, mat arrays",
    "sklearn._loss._loss.Cy*": "Cython loss types; __reduce__ calls the type with its "
    "numeric parameters (quantile, delta, power) or none",
    "sklearn.linear_model._sgd_fast.*": "Cython loss types; __reduce__ calls the type with "
    "its numeric parameters (threshold, c, epsilon) or none",
    "numpy.random.bit_generator.SeedSequence": "Cython type; its pickle helper below",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence": "Cython's generated unpickle "
    "helper: checks a checksum, calls SeedSequence.__new__(type) for the type given (an "
    "allowed global) and sets its entropy/pool fields",
    "numpy.<scalar types>": "calling a NumPy scalar type makes a number",
    "xgboost.core.Booster": "object.__new__; __setstate__ hands the state's 'handle' bytes to "
    "XGBoosterUnserializeFromBuffer (XGBoost's own model format, parsed natively, no code) "
    "and updates __dict__; never called (its __init__ reads model_file paths)",
    "lightgbm.basic.Booster": "object.__new__; __setstate__ hands the state's model string to "
    "LGBM_BoosterLoadModelFromString (LightGBM's text format, no code) and updates "
    "__dict__; never called (its __init__ reads model_file paths)",
    "xgboost.sklearn.*": "scikit-learn estimators (BaseEstimator.__setstate__, object.__new__) "
    "holding a Booster",
    "lightgbm.sklearn.*": "scikit-learn estimators (BaseEstimator.__setstate__, "
    "object.__new__) holding a Booster",
}


@dataclass(frozen=True)
class Profile:
    """A named set of trusted globals, each allowed for one :data:`Use`."""

    name: str
    description: str
    uses: Mapping[str, Use]


def _profile(
    name: str,
    description: str,
    *,
    classes: Iterable[str] = (),
    callables: Iterable[str] = (),
    references: Iterable[str] = (),
) -> Profile:
    uses: dict[str, Use] = {}
    uses.update(dict.fromkeys(classes, "class"))
    uses.update(dict.fromkeys(callables, "callable"))
    uses.update(dict.fromkeys(references, "reference"))
    return Profile(name=name, description=description, uses=uses)


PROFILES: Final[Mapping[str, Profile]] = {
    "sklearn": _profile(
        "sklearn",
        "scikit-learn estimators, pipelines and the internal types fitted models hold",
        classes=(*SKLEARN_ESTIMATORS, *SKLEARN_INTERNAL_CLASSES),
        callables=SKLEARN_CALLABLES,
        references=SKLEARN_REFERENCES,
    ),
    "xgboost": _profile(
        "xgboost",
        "XGBoost Boosters and its scikit-learn wrappers",
        classes=XGBOOST_CLASSES,
    ),
    "lightgbm": _profile(
        "lightgbm",
        "LightGBM Boosters and its scikit-learn wrappers",
        classes=LIGHTGBM_CLASSES,
    ),
}

PROFILE_NAMES: Final[tuple[str, ...]] = tuple(PROFILES)


def resolve(names: Iterable[str]) -> tuple[Profile, ...]:
    """The profiles named (raises ``ValueError`` naming the unknown one and the choices)."""
    out = []
    for name in names:
        if name not in PROFILES:
            raise ValueError(
                f"unknown scan profile {name!r}: choose from {', '.join(PROFILE_NAMES)}"
            )
        out.append(PROFILES[name])
    return tuple(out)


__all__ = ["PROFILES", "PROFILE_NAMES", "REVIEWS", "Profile", "Use", "resolve"]
