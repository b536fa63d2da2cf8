"""Which pickle globals a model file may reference.

An *allowlist*, not a blocklist: every published picklescan/modelscan bypass (``pip.main``,
``asyncio`` subprocess transports, ``pydoc.locate``, ``operator.attrgetter``, ``torch``
helpers that themselves call ``pickle.load``...) is a callable nobody thought to block. The
globals ordinary checkpoints need are few and stable: tensor and storage rebuilders, dtypes,
``OrderedDict``, NumPy's array reconstructors. Everything else is a finding; the
:data:`KNOWN_DANGEROUS` table only makes the message sharper ("runs a shell command" rather
than "not on the allowlist").

Names are compared exactly (module + qualified name), after the Python 2 -> 3 renames the
unpickler itself applies (``__builtin__`` -> ``builtins``), so ``torch._utils`` +
``os.system`` (a dotted traversal that reaches ``os``) never matches an allowed entry.
"""

from __future__ import annotations

import _compat_pickle
from collections.abc import Iterable
from typing import Final

from modelward.integrity.scanning.profiles import Profile, Use

_TORCH_STORAGES: Final = (
    "Float",
    "Double",
    "Half",
    "BFloat16",
    "Long",
    "Int",
    "Short",
    "Char",
    "Byte",
    "Bool",
    "ComplexFloat",
    "ComplexDouble",
    "QInt8",
    "QUInt8",
    "QInt32",
    "QUInt4x2",
    "QUInt2x4",
)
_TORCH_DTYPES: Final = (
    "float32",
    "float",
    "float64",
    "double",
    "float16",
    "half",
    "bfloat16",
    "int64",
    "long",
    "int32",
    "int",
    "int16",
    "short",
    "int8",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
    "complex64",
    "cfloat",
    "complex128",
    "cdouble",
    "complex32",
    "chalf",
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "bits8",
    "bits16",
)
_TORCH_REBUILDERS: Final = (
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_sparse_tensor",
    "_rebuild_sparse_csr_tensor",
    "_rebuild_qtensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_wrapper_subclass",
    "_rebuild_nested_tensor",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_device_tensor_from_cpu_tensor",
)
_NUMPY_CORE: Final = ("numpy.core", "numpy._core")

#: Globals that ordinary checkpoints (state dicts, training checkpoints, HF ``.bin``, NumPy
#: object pickles of plain data, joblib arrays) reference. Each is a constructor of plain
#: data whose result cannot run code on its own.
DEFAULT_ALLOWED_GLOBALS: Final[frozenset[str]] = frozenset(
    {
        # plain containers and scalars
        *(
            f"builtins.{n}"
            for n in (
                "set",
                "frozenset",
                "dict",
                "list",
                "tuple",
                "bytearray",
                "bytes",
                "complex",
                "int",
                "float",
                "str",
                "bool",
                "slice",
                "range",
                "object",
            )
        ),
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.Counter",
        "collections.deque",
        "copyreg._reconstructor",
        "copyreg.__newobj__",
        "_codecs.encode",  # how protocol 2 pickles Python 3 bytes
        "argparse.Namespace",  # training checkpoints (fairseq, many scripts) store their args
        "datetime.datetime",
        "datetime.date",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "uuid.UUID",
        "fractions.Fraction",
        # torch tensors, parameters, storages, dtypes, layouts
        *(f"torch._utils.{n}" for n in _TORCH_REBUILDERS),
        "torch._tensor._rebuild_from_type_v2",
        "torch.serialization._get_layout",
        "torch.nn.parameter.Parameter",
        "torch.nn.parameter.Buffer",
        "torch.Tensor",
        "torch.Size",
        "torch.device",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        "torch.storage._load_from_bytes_noop",
        *(f"torch.{n}Storage" for n in _TORCH_STORAGES),
        *(f"torch.{n}" for n in _TORCH_DTYPES),
        *(
            f"torch.{n}"
            for n in (
                "strided",
                "sparse_coo",
                "sparse_csr",
                "sparse_csc",
                "sparse_bsr",
                "sparse_bsc",
                "_mkldnn",
                "contiguous_format",
                "channels_last",
                "channels_last_3d",
                "preserve_format",
                "per_tensor_affine",
                "per_channel_affine",
                "per_tensor_symmetric",
                "per_channel_symmetric",
                "per_channel_affine_float_qparams",
            )
        ),
        # numpy arrays, scalars, dtypes, RNG states
        *(f"{m}.multiarray.{n}" for m in _NUMPY_CORE for n in ("_reconstruct", "scalar")),
        *(f"{m}.numeric._frombuffer" for m in _NUMPY_CORE),
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.memmap",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
        *(
            f"numpy.random._{n}.{n.upper() if n in ('pcg64', 'sfc64', 'philox') else 'MT19937'}"
            for n in ("mt19937", "pcg64", "sfc64", "philox")
        ),
        *(
            f"numpy.dtypes.{n}DType"
            for n in (
                "Float16",
                "Float32",
                "Float64",
                "Int8",
                "Int16",
                "Int32",
                "Int64",
                "UInt8",
                "UInt16",
                "UInt32",
                "UInt64",
                "Bool",
                "Complex64",
                "Complex128",
                "LongDouble",
                "Str",
                "Bytes",
                "Void",
            )
        ),
        # joblib's array wrapper (its raw array bytes are skipped, object arrays scanned)
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    }
)

#: Known code-execution gadgets, for the message only (anything unlisted is still refused).
KNOWN_DANGEROUS: Final[dict[str, str]] = {
    "builtins.eval": "evaluates Python code",
    "builtins.exec": "executes Python code",
    "builtins.compile": "compiles Python code",
    "builtins.__import__": "imports a module",
    "builtins.getattr": "reaches arbitrary attributes (gadget builder)",
    "builtins.setattr": "overwrites attributes",
    "builtins.delattr": "deletes attributes",
    "builtins.open": "opens files",
    "builtins.breakpoint": "starts a debugger",
    "builtins.globals": "exposes module globals",
    "builtins.vars": "exposes namespaces",
    "builtins.input": "reads stdin",
    "builtins.apply": "calls a callable",
    "os.system": "runs a shell command",
    "os.popen": "runs a shell command",
    "os.execv": "replaces the process",
    "os.execve": "replaces the process",
    "os.remove": "deletes files",
    "os.unlink": "deletes files",
    "os.rmdir": "deletes dirs",
    "os.putenv": "changes the environment",
    "posix.system": "runs a shell command",
    "nt.system": "runs a shell command",
    "subprocess.Popen": "runs a process",
    "subprocess.run": "runs a process",
    "subprocess.call": "runs a process",
    "subprocess.check_call": "runs a process",
    "subprocess.check_output": "runs a process",
    "subprocess.getoutput": "runs a shell command",
    "subprocess.getstatusoutput": "runs a shell command",
    "pty.spawn": "runs a process",
    "runpy.run_path": "runs a Python file",
    "runpy.run_module": "runs a Python module",
    "runpy._run_code": "executes Python code",
    "code.InteractiveInterpreter.runsource": "executes Python code",
    "importlib.import_module": "imports a module",
    "pickle.loads": "nested unpickling",
    "pickle.load": "nested unpickling",
    "_pickle.loads": "nested unpickling",
    "_pickle.load": "nested unpickling",
    "pickle._loads": "nested unpickling",
    "marshal.loads": "loads code objects",
    "types.CodeType": "builds code objects",
    "types.FunctionType": "builds functions",
    "torch.load": "nested unpickling",
    "torch.jit.load": "loads TorchScript",
    "torch.hub.load": "downloads and runs code",
    "torch.hub.load_state_dict_from_url": "downloads a checkpoint",
    "torch.serialization.load": "nested unpickling",
    "torch._C._jit_compile": "compiles code",
    "numpy.load": "nested unpickling",
    "numpy.testing._private.utils.runstring": "executes Python code",
    "numpy.f2py.diagnose.run_command": "runs a shell command",
    "joblib.load": "nested unpickling",
    "dill.loads": "nested unpickling",
    "pip.main": "installs packages",
    "pip._internal.main": "installs packages",
    "pydoc.locate": "imports anything",
    "pydoc.pipepager": "runs a shell command",
    "operator.attrgetter": "reaches arbitrary attributes (gadget builder)",
    "operator.methodcaller": "calls arbitrary methods (gadget builder)",
    "operator.itemgetter": "gadget builder",
    "functools.partial": "binds arguments to any callable (gadget builder)",
    "functools.reduce": "calls a callable repeatedly",
    "timeit.timeit": "executes Python code",
    "cProfile.run": "executes Python code",
    "profile.run": "executes Python code",
    "pdb.run": "executes Python code",
    "bdb.Bdb.run": "executes Python code",
    "trace.Trace.run": "executes Python code",
    "doctest.debug_script": "executes Python code",
    "webbrowser.open": "opens URLs",
    "shutil.rmtree": "deletes trees",
    "shutil.copyfile": "writes files",
    "ctypes.CDLL": "loads native code",
    "asyncio.create_subprocess_shell": "runs a shell command",
    "asyncio.subprocess.create_subprocess_exec": "runs a process",
    "asyncio.unix_events._UnixSubprocessTransport._start": "runs a process",
    "_posixsubprocess.fork_exec": "runs a process",
    "socket.create_connection": "opens network connections",
    "urllib.request.urlopen": "fetches URLs",
    "requests.get": "fetches URLs",
    "requests.post": "sends data",
    "sys.exit": "exits",
    "_io.FileIO": "opens files",
    "io.open": "opens files",
    "tempfile.mktemp": "files",
    "glob.glob": "lists files",
    "platform.popen": "runs a shell command",
    "idlelib.pyshell.ModifiedInterpreter.runcode": "executes Python code",
    "lib2to3.pgen2.pgen.ParserGenerator.make_label": "evaluates Python code",
}

#: Modules any member of which is a gadget (used when the exact name is not listed).
DANGEROUS_MODULES: Final[dict[str, str]] = {
    "os": "operating-system access",
    "posix": "operating-system access",
    "nt": "operating-system access",
    "subprocess": "runs processes",
    "pty": "runs processes",
    "sys": "interpreter internals",
    "socket": "network access",
    "runpy": "runs code",
    "importlib": "imports modules",
    "pickle": "nested unpickling",
    "_pickle": "nested unpickling",
    "marshal": "code objects",
    "ctypes": "native code",
    "shutil": "file-system changes",
    "code": "runs code",
    "codeop": "compiles code",
    "asyncio": "runs processes",
    "multiprocessing": "runs processes",
    "pip": "installs code",
    "webbrowser": "opens URLs",
    "urllib": "network access",
    "http": "network access",
    "requests": "network access",
    "ftplib": "network access",
    "smtplib": "network access",
    "telnetlib": "network access",
    "dill": "nested unpickling",
    "cloudpickle": "nested unpickling",
    "_posixsubprocess": "runs processes",
    "signal": "process control",
    "threading": "runs code in threads",
    "_thread": "runs code in threads",
    "builtins": "interpreter builtins",
}


def normalise(module: str, name: str) -> tuple[str, str]:
    """Apply the Python 2 -> 3 renames the unpickler applies (``fix_imports``)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class Allowlist:
    """Exact names plus ``module.*`` patterns (``--allow-global 'sklearn.*'``), plus the
    names of trusted-type profiles, each allowed for one use only (see ``profiles``)."""

    def __init__(self, extra: Iterable[str] = (), *, profiles: Iterable[Profile] = ()) -> None:
        names = set(DEFAULT_ALLOWED_GLOBALS)
        prefixes = []
        uses: dict[str, Use] = {}
        for profile in profiles:
            uses.update(profile.uses)
        for item in extra:
            if item.endswith(".*"):
                prefixes.append(item[:-1])
            else:
                names.add(item)
        # what the base list or the user allow stays allowed for any use
        self._uses = {name: use for name, use in uses.items() if name not in names}
        self._names = frozenset(names | set(self._uses))
        self._prefixes = tuple(prefixes)

    def allows(self, module: str, name: str) -> bool:
        full = f"{module}.{name}"
        if full in self._names:
            return True
        # a prefix pattern never allows dotted traversal inside the name
        return "." not in name and any(full.startswith(p) for p in self._prefixes)

    def use(self, full: str) -> Use | None:
        """How a profile allows ``full`` to be used, or None when any use is allowed."""
        use = self._uses.get(full)
        if use is not None and any(full.startswith(p) for p in self._prefixes):
            return None
        return use


def danger(module: str, name: str) -> str | None:
    """Why a global is known to be dangerous, or None if it is merely not allowed."""
    full = f"{module}.{name}"
    if full in KNOWN_DANGEROUS:
        return KNOWN_DANGEROUS[full]
    root = module.split(".", 1)[0]
    if root in DANGEROUS_MODULES:
        return DANGEROUS_MODULES[root]
    for part in name.split("."):
        if part in (
            "system",
            "popen",
            "exec",
            "eval",
            "__import__",
            "__builtins__",
            "__globals__",
            "__subclasses__",
            "__code__",
            "__reduce__",
            "loads",
            "load",
        ):
            return f"reaches {part}"
    return None
