/* Optional C speed-ups for ruma.protocol.json.
 *
 * freeze_plain(value, lo, hi) is ruma.protocol.json._freeze_plain_node in C: one walk that
 * checks a decoded JSON tree is plain (exact dict/list/str/int/bool/None, str keys,
 * integers within [lo, hi], nested at most MAX_DEPTH deep) and returns a deep copy made of
 * FrozenDict/FrozenList. Anything else raises the NotPlain exception given to init(), and
 * the caller takes the general Python path, which decides (and words errors) as before.
 *
 * Every event received over federation goes through this walk, so it is the one piece of
 * canonical-JSON checking worth writing in C. The pure-Python version stays the
 * reference; tests/protocol/test_speedups.py proves both give the same answers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Must match ruma.protocol.json._MAX_DEPTH. */
#define MAX_DEPTH 256

static PyTypeObject *frozen_dict_type = NULL;
static PyTypeObject *frozen_list_type = NULL;
static PyObject *not_plain = NULL;
static PyObject *empty_tuple = NULL;

static PyObject *freeze_node(PyObject *value, long long lo, long long hi, int depth);

static PyObject *
fail_not_plain(void)
{
    PyErr_SetNone(not_plain);
    return NULL;
}

/* 1: a plain leaf (new reference in *out); 0: a container; -1: not plain. */
static int
freeze_leaf(PyObject *value, long long lo, long long hi, PyObject **out)
{
    PyTypeObject *t = Py_TYPE(value);
    if (t == &PyUnicode_Type || value == Py_None || t == &PyBool_Type) {
        Py_INCREF(value);
        *out = value;
        return 1;
    }
    if (t == &PyLong_Type) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return -1;
        }
        if (v < lo || v > hi) {
            return -1;
        }
        Py_INCREF(value);
        *out = value;
        return 1;
    }
    if (t == &PyDict_Type || t == frozen_dict_type || t == &PyList_Type || t == frozen_list_type) {
        return 0;
    }
    return -1;
}

static PyObject *
freeze_child(PyObject *value, long long lo, long long hi, int depth)
{
    PyObject *out = NULL;
    int leaf = freeze_leaf(value, lo, hi, &out);
    if (leaf == 1) {
        return out;
    }
    if (leaf < 0) {
        return fail_not_plain();
    }
    return freeze_node(value, lo, hi, depth);
}

static PyObject *
freeze_dict(PyObject *value, long long lo, long long hi, int depth)
{
    PyObject *out = PyDict_Type.tp_new(frozen_dict_type, empty_tuple, NULL);
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *item;
    while (PyDict_Next(value, &pos, &key, &item)) {
        if (Py_TYPE(key) != &PyUnicode_Type) {
            Py_DECREF(out);
            return fail_not_plain();
        }
        PyObject *frozen = freeze_child(item, lo, hi, depth);
        if (frozen == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        /* PyDict_SetItem writes the dict storage directly, past FrozenDict's refusing
           __setitem__: the copy is filled here and immutable from then on. */
        int rc = PyDict_SetItem(out, key, frozen);
        Py_DECREF(frozen);
        if (rc < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *
freeze_list(PyObject *value, long long lo, long long hi, int depth)
{
    PyObject *out = PyList_Type.tp_new(frozen_list_type, empty_tuple, NULL);
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(value);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *frozen = freeze_child(PyList_GET_ITEM(value, i), lo, hi, depth);
        if (frozen == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        int rc = PyList_Append(out, frozen);
        Py_DECREF(frozen);
        if (rc < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *
freeze_node(PyObject *value, long long lo, long long hi, int depth)
{
    PyTypeObject *t = Py_TYPE(value);
    if (t == &PyDict_Type || t == frozen_dict_type) {
        if (depth >= MAX_DEPTH) {
            return fail_not_plain();
        }
        return freeze_dict(value, lo, hi, depth + 1);
    }
    if (t == &PyList_Type || t == frozen_list_type) {
        if (depth >= MAX_DEPTH) {
            return fail_not_plain();
        }
        return freeze_list(value, lo, hi, depth + 1);
    }
    PyObject *out = NULL;
    if (freeze_leaf(value, lo, hi, &out) == 1) {
        return out;
    }
    return fail_not_plain();
}

static PyObject *
speedups_freeze_plain(PyObject *self, PyObject *args)
{
    PyObject *value;
    long long lo, hi;
    if (!PyArg_ParseTuple(args, "OLL:freeze_plain", &value, &lo, &hi)) {
        return NULL;
    }
    if (frozen_dict_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ruma.protocol._speedups.init() was not called");
        return NULL;
    }
    return freeze_node(value, lo, hi, 0);
}

static PyObject *
speedups_init(PyObject *self, PyObject *args)
{
    PyObject *fd, *fl, *exc;
    if (!PyArg_ParseTuple(args, "O!O!O:init", &PyType_Type, &fd, &PyType_Type, &fl, &exc)) {
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)fd, &PyDict_Type)
        || !PyType_IsSubtype((PyTypeObject *)fl, &PyList_Type)) {
        PyErr_SetString(PyExc_TypeError, "init() wants a dict subclass and a list subclass");
        return NULL;
    }
    if (!PyExceptionClass_Check(exc)) {
        PyErr_SetString(PyExc_TypeError, "init() wants an exception class");
        return NULL;
    }
    Py_INCREF(fd);
    Py_INCREF(fl);
    Py_INCREF(exc);
    Py_XSETREF(frozen_dict_type, (PyTypeObject *)fd);
    Py_XSETREF(frozen_list_type, (PyTypeObject *)fl);
    Py_XSETREF(not_plain, exc);
    Py_RETURN_NONE;
}

/* --- pdu_fields ------------------------------------------------------------------------ */

#define MAX_ID_BYTES 255

/* An ASCII str of at most MAX_ID_BYTES characters (so bytes); else 0. Longer or non-ASCII
   strings may still be valid: the Python checks decide those. */
static int
short_ascii(PyObject *s)
{
    return PyUnicode_Check(s) && PyUnicode_IS_ASCII(s) && PyUnicode_GET_LENGTH(s) <= MAX_ID_BYTES;
}

static PyObject *
event_id_tuple(PyObject *refs)
{
    if (!PyList_Check(refs)) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(refs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ref = PyList_GET_ITEM(refs, i);
        if (Py_TYPE(ref) != &PyUnicode_Type || !short_ascii(ref) || PyUnicode_GET_LENGTH(ref) < 1
            || PyUnicode_READ_CHAR(ref, 0) != '$') {
            return NULL;
        }
    }
    return PyList_AsTuple(refs);
}

static int
all_str_values(PyObject *d)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(d, &pos, &key, &value)) {
        if (!PyUnicode_Check(value)) {
            return 0;
        }
    }
    return 1;
}

/* pdu_fields(d, max_depth): the shape checks Event.from_pdu makes on the top level of a
   frozen, plain PDU of a hash-ID room version, for the common well-formed case. Returns
   (type, sender, state_key, content, depth, origin_server_ts, prev_ids, auth_ids), or
   None whenever anything is unusual; Python then makes every check itself and words the
   error. It only ever accepts what the Python checks accept. */
static PyObject *
speedups_pdu_fields(PyObject *self, PyObject *args)
{
    PyObject *d;
    long long max_depth;
    if (!PyArg_ParseTuple(args, "O!L:pdu_fields", &PyDict_Type, &d, &max_depth)) {
        return NULL;
    }
    PyObject *type = PyDict_GetItemString(d, "type");
    PyObject *sender = PyDict_GetItemString(d, "sender");
    PyObject *state_key = PyDict_GetItemString(d, "state_key");
    PyObject *content = PyDict_GetItemString(d, "content");
    PyObject *depth = PyDict_GetItemString(d, "depth");
    PyObject *ts = PyDict_GetItemString(d, "origin_server_ts");
    PyObject *hashes = PyDict_GetItemString(d, "hashes");
    PyObject *signatures = PyDict_GetItemString(d, "signatures");
    PyObject *unsigned_ = PyDict_GetItemString(d, "unsigned");
    PyObject *origin = PyDict_GetItemString(d, "origin");
    PyObject *prev = PyDict_GetItemString(d, "prev_events");
    PyObject *auth = PyDict_GetItemString(d, "auth_events");
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (type == NULL || !short_ascii(type) || sender == NULL || !short_ascii(sender)) {
        Py_RETURN_NONE;
    }
    if (state_key != NULL && !short_ascii(state_key)) {
        Py_RETURN_NONE;
    }
    if (content == NULL || !PyDict_Check(content)) {
        Py_RETURN_NONE;
    }
    if (depth == NULL || !PyLong_CheckExact(depth) || ts == NULL || !PyLong_CheckExact(ts)) {
        Py_RETURN_NONE;
    }
    int overflow = 0;
    long long depth_v = PyLong_AsLongLongAndOverflow(depth, &overflow);
    if (overflow || (depth_v == -1 && PyErr_Occurred()) || depth_v < 0 || depth_v > max_depth) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (hashes == NULL || !PyDict_Check(hashes) || !all_str_values(hashes)) {
        Py_RETURN_NONE;
    }
    if (signatures == NULL || !PyDict_Check(signatures)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t pos = 0;
    PyObject *server, *sigs;
    while (PyDict_Next(signatures, &pos, &server, &sigs)) {
        if (!PyDict_Check(sigs) || !all_str_values(sigs)) {
            Py_RETURN_NONE;
        }
    }
    if ((unsigned_ != NULL && !PyDict_Check(unsigned_)) || (origin != NULL && !PyUnicode_Check(origin))) {
        Py_RETURN_NONE;
    }
    if (prev == NULL || auth == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *prev_ids = event_id_tuple(prev);
    if (prev_ids == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *auth_ids = event_id_tuple(auth);
    if (auth_ids == NULL) {
        Py_DECREF(prev_ids);
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(OOOOOONN)", type, sender, state_key == NULL ? Py_None : state_key,
                         content, depth, ts, prev_ids, auth_ids);
}

static PyMethodDef speedups_methods[] = {
    {"pdu_fields", speedups_pdu_fields, METH_VARARGS,
     "pdu_fields(pdu, max_depth): top-level shape of a well-formed PDU, or None."},
    {"init", speedups_init, METH_VARARGS,
     "init(FrozenDict, FrozenList, NotPlain): the types freeze_plain makes and raises."},
    {"freeze_plain", speedups_freeze_plain, METH_VARARGS,
     "freeze_plain(value, lo, hi): check a plain JSON tree and deep-freeze it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "ruma.protocol._speedups", NULL, -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    empty_tuple = PyTuple_New(0);
    if (empty_tuple == NULL) {
        return NULL;
    }
    return PyModule_Create(&speedups_module);
}
