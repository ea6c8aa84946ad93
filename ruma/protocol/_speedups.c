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
static PyObject *event_id_key = NULL;
static PyObject *tpi_key = NULL;

/* The PDU keys looked up from C, made once: PyDict_GetItemString would build and hash a
   new str object on every call. */
enum {
    K_TYPE,
    K_SENDER,
    K_STATE_KEY,
    K_CONTENT,
    K_DEPTH,
    K_ORIGIN_SERVER_TS,
    K_HASHES,
    K_SIGNATURES,
    K_UNSIGNED,
    K_ORIGIN,
    K_PREV_EVENTS,
    K_AUTH_EVENTS,
    K_COUNT
};
static const char *key_names[K_COUNT] = {
    "type",
    "sender",
    "state_key",
    "content",
    "depth",
    "origin_server_ts",
    "hashes",
    "signatures",
    "unsigned",
    "origin",
    "prev_events",
    "auth_events",
};
static PyObject *keys[K_COUNT];
#define KEY_TYPE keys[K_TYPE]
#define KEY_SENDER keys[K_SENDER]
#define KEY_STATE_KEY keys[K_STATE_KEY]
#define KEY_CONTENT keys[K_CONTENT]
#define KEY_DEPTH keys[K_DEPTH]
#define KEY_ORIGIN_SERVER_TS keys[K_ORIGIN_SERVER_TS]
#define KEY_HASHES keys[K_HASHES]
#define KEY_SIGNATURES keys[K_SIGNATURES]
#define KEY_UNSIGNED keys[K_UNSIGNED]
#define KEY_ORIGIN keys[K_ORIGIN]
#define KEY_PREV_EVENTS keys[K_PREV_EVENTS]
#define KEY_AUTH_EVENTS keys[K_AUTH_EVENTS]

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
pdu_fields(PyObject *d, long long max_depth)
{
    PyObject *type = PyDict_GetItemWithError(d, KEY_TYPE);
    PyObject *sender = PyDict_GetItemWithError(d, KEY_SENDER);
    PyObject *state_key = PyDict_GetItemWithError(d, KEY_STATE_KEY);
    PyObject *content = PyDict_GetItemWithError(d, KEY_CONTENT);
    PyObject *depth = PyDict_GetItemWithError(d, KEY_DEPTH);
    PyObject *ts = PyDict_GetItemWithError(d, KEY_ORIGIN_SERVER_TS);
    PyObject *hashes = PyDict_GetItemWithError(d, KEY_HASHES);
    PyObject *signatures = PyDict_GetItemWithError(d, KEY_SIGNATURES);
    PyObject *unsigned_ = PyDict_GetItemWithError(d, KEY_UNSIGNED);
    PyObject *origin = PyDict_GetItemWithError(d, KEY_ORIGIN);
    PyObject *prev = PyDict_GetItemWithError(d, KEY_PREV_EVENTS);
    PyObject *auth = PyDict_GetItemWithError(d, KEY_AUTH_EVENTS);
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

static PyObject *
speedups_pdu_fields(PyObject *self, PyObject *args)
{
    PyObject *d;
    long long max_depth;
    if (!PyArg_ParseTuple(args, "O!L:pdu_fields", &PyDict_Type, &d, &max_depth)) {
        return NULL;
    }
    return pdu_fields(d, max_depth);
}

/* freeze_pdu(pdu, lo, hi, max_depth): freeze_plain(pdu, lo, hi) and, unless the PDU has
   an event_id (which hash-ID versions drop before anything else), pdu_fields of the
   frozen copy, in one call: (frozen, fields or None). Raises NotPlain as freeze_plain. */
static PyObject *
speedups_freeze_pdu(PyObject *self, PyObject *args)
{
    PyObject *value;
    long long lo, hi, max_depth;
    if (!PyArg_ParseTuple(args, "OLLL:freeze_pdu", &value, &lo, &hi, &max_depth)) {
        return NULL;
    }
    if (frozen_dict_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ruma.protocol._speedups.init() was not called");
        return NULL;
    }
    PyObject *frozen = freeze_node(value, lo, hi, 0);
    if (frozen == NULL) {
        return NULL;
    }
    PyObject *fields;
    if (!PyDict_Check(frozen)) {
        fields = Py_None;
        Py_INCREF(fields);
    } else {
        int has_id = PyDict_Contains(frozen, event_id_key);
        if (has_id < 0) {
            Py_DECREF(frozen);
            return NULL;
        }
        if (has_id) {
            fields = Py_None;
            Py_INCREF(fields);
        } else {
            fields = pdu_fields(frozen, max_depth);
            if (fields == NULL) {
                Py_DECREF(frozen);
                return NULL;
            }
        }
    }
    return Py_BuildValue("(NN)", frozen, fields);
}

/* --- redacted_view ---------------------------------------------------------------------- */

/* redacted_view(pdu, keep_top, keep_content): ruma.protocol.redaction._redacted_view for
   a PDU whose content is a dict, without the v11 third_party_invite rule (the caller
   takes the Python path for those). keep_top is a frozenset of top-level keys;
   keep_content a tuple of content keys, or None to keep the whole content. The new
   dicts share pdu's values, as the Python version's do. */
static PyObject *redacted_view(PyObject *pdu, PyObject *keep_top, PyObject *keep_content);

static PyObject *
speedups_redacted_view(PyObject *self, PyObject *args)
{
    PyObject *pdu, *keep_top, *keep_content;
    if (!PyArg_ParseTuple(args, "O!O!O:redacted_view", &PyDict_Type, &pdu, &PyFrozenSet_Type,
                          &keep_top, &keep_content)) {
        return NULL;
    }
    if (keep_content != Py_None && !PyTuple_Check(keep_content)) {
        PyErr_SetString(PyExc_TypeError, "keep_content must be a tuple or None");
        return NULL;
    }
    return redacted_view(pdu, keep_top, keep_content);
}

/* signable_view(pdu, keep_top, content_keys, member_tpi_rule): the redacted view of an
   event for its reference hash and signatures, choosing the kept content keys by the
   event's type from content_keys ({type: tuple or None}; other types keep none), as
   ruma.protocol.redaction._redacted_view(signable=True) does. None where that needs its
   Python path: content not a dict, or, with member_tpi_rule (v11 rules), a member event
   with a third_party_invite. */
static PyObject *
speedups_signable_view(PyObject *self, PyObject *args)
{
    PyObject *pdu, *keep_top, *content_keys;
    int tpi_rule;
    if (!PyArg_ParseTuple(args, "O!O!O!p:signable_view", &PyDict_Type, &pdu, &PyFrozenSet_Type,
                          &keep_top, &PyDict_Type, &content_keys, &tpi_rule)) {
        return NULL;
    }
    PyObject *content = PyDict_GetItemWithError(pdu, KEY_CONTENT);
    if (content == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (!PyDict_Check(content)) {
        Py_RETURN_NONE;
    }
    PyObject *type = PyDict_GetItemWithError(pdu, KEY_TYPE);
    PyObject *keep_content = empty_tuple;
    if (type == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
    } else if (PyUnicode_Check(type)) {
        PyObject *found = PyDict_GetItemWithError(content_keys, type);
        if (found != NULL) {
            keep_content = found;
        } else if (PyErr_Occurred()) {
            return NULL;
        }
        if (tpi_rule && PyUnicode_CompareWithASCIIString(type, "m.room.member") == 0) {
            int has = PyDict_Contains(content, tpi_key);
            if (has < 0) {
                return NULL;
            }
            if (has) {
                Py_RETURN_NONE;
            }
        }
    }
    if (keep_content != Py_None && !PyTuple_Check(keep_content)) {
        PyErr_SetString(PyExc_TypeError, "content_keys values must be tuples or None");
        return NULL;
    }
    return redacted_view(pdu, keep_top, keep_content);
}

static PyObject *
redacted_view(PyObject *pdu, PyObject *keep_top, PyObject *keep_content)
{
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(pdu, &pos, &key, &value)) {
        int keep = PySet_Contains(keep_top, key);
        if (keep < 0) {
            goto error;
        }
        if (keep && PyDict_SetItem(out, key, value) < 0) {
            goto error;
        }
    }
    PyObject *content = PyDict_GetItemWithError(out, KEY_CONTENT); /* borrowed */
    if (content == NULL) {
        return out;
    }
    if (!PyDict_Check(content)) {
        PyErr_SetString(PyExc_TypeError, "content must be a dict");
        goto error;
    }
    PyObject *new_content;
    if (keep_content == Py_None) {
        new_content = PyDict_Copy(content);
        if (new_content == NULL) {
            goto error;
        }
    } else {
        new_content = PyDict_New();
        if (new_content == NULL) {
            goto error;
        }
        Py_ssize_t n = PyTuple_GET_SIZE(keep_content);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *k = PyTuple_GET_ITEM(keep_content, i);
            PyObject *v = PyDict_GetItemWithError(content, k); /* borrowed */
            if (v == NULL) {
                if (PyErr_Occurred()) {
                    Py_DECREF(new_content);
                    goto error;
                }
                continue;
            }
            if (PyDict_SetItem(new_content, k, v) < 0) {
                Py_DECREF(new_content);
                goto error;
            }
        }
    }
    int rc = PyDict_SetItem(out, KEY_CONTENT, new_content);
    Py_DECREF(new_content);
    if (rc < 0) {
        goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

/* without(d, drop): a new dict of d's items whose keys are not in the frozenset drop,
   in d's order; the values are shared. (What the content hash covers.) */
static PyObject *
speedups_without(PyObject *self, PyObject *args)
{
    PyObject *d, *drop;
    if (!PyArg_ParseTuple(args, "O!O!:without", &PyDict_Type, &d, &PyFrozenSet_Type, &drop)) {
        return NULL;
    }
    PyObject *out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(d, &pos, &key, &value)) {
        int dropped = PySet_Contains(drop, key);
        if (dropped < 0 || (!dropped && PyDict_SetItem(out, key, value) < 0)) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyMethodDef speedups_methods[] = {
    {"without", speedups_without, METH_VARARGS,
     "without(d, drop): d's items whose keys are not in drop."},
    {"signable_view", speedups_signable_view, METH_VARARGS,
     "signable_view(pdu, keep_top, content_keys, member_tpi_rule): redacted view or None."},
    {"freeze_pdu", speedups_freeze_pdu, METH_VARARGS,
     "freeze_pdu(pdu, lo, hi, max_depth): (freeze_plain(...), pdu_fields(...) or None)."},
    {"redacted_view", speedups_redacted_view, METH_VARARGS,
     "redacted_view(pdu, keep_top, keep_content): the redacted form, values shared."},
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
    event_id_key = PyUnicode_InternFromString("event_id");
    tpi_key = PyUnicode_InternFromString("third_party_invite");
    if (empty_tuple == NULL || event_id_key == NULL || tpi_key == NULL) {
        return NULL;
    }
    for (int i = 0; i < K_COUNT; i++) {
        keys[i] = PyUnicode_InternFromString(key_names[i]);
        if (keys[i] == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&speedups_module);
}
