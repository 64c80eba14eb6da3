"""Maths of the CTC loss: alignment tables and the forward-backward recursion.

Plain functions, no settings and no truth parsing: :func:`ctc_loss` takes the
array module ``xp`` first (as Thinc's ``ops``), then the concatenated
guesses, the label sequences (host int64 arrays) and the number of steps of
each sequence, and returns the gradient with respect to the logits together
with the unnormalised loss ``-log p(l_i | x_i)`` of each sequence.

How the recursion runs: the batch is padded to the longest sequence
(``T_max`` steps) and the longest extended label sequence (``S = 2 L_max + 1``
states: blank, l_1, blank, ..., l_L, blank) and sorted by decreasing length,
so that the sequences still running at step ``k`` are a prefix of the batch.
The recursions loop over time steps only; each step is ten whole-array
operations on the running prefix of every sequence's states, forward and
backward at once.

Layout: one row of ``W = S + 2`` slots per sequence, two padding slots then
the states, so that ``alpha_t(s)`` reads slots ``j``, ``j - 1`` and ``j - 2``
of the previous step for every row at once (three shifted views of one
buffer). The backward recursion is the same step run on each sequence
reversed in time (from its own last step) and in states (``j = 2 + S - 1 - s``),
so both directions share the running prefix. Padding slots and missing states
carry the log-probability :data:`NEG`, so they drop out of every sum without
masks, and an impossible alignment gives a log-likelihood near NEG, not NaN.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy

#: log(0) stand-in. Finite, so that differences of two "impossible" values are
#: never NaN, and far below any real log-probability (a path of 10^6 steps at
#: -10^4 each is -10^10); its multiples stay far from the float32 range limit.
NEG = -1e30
#: Largest ``T * (max(z) - min(z))`` of logits ``z`` over ``T`` steps that the
#: recursion tells apart from :data:`NEG` (a path's log-probability is at least
#: ``-T`` times that range, less ``T log C``); callers refuse wider logits.
LOGIT_SPAN_LIMIT = 1e27


def ctc_min_steps(labels: Sequence[numpy.ndarray]) -> numpy.ndarray:
    """The fewest time steps that can emit each label sequence (host int64).

    ``L`` steps for ``L`` labels, plus one blank between each pair of equal
    adjacent labels (a path merges repeats unless a blank separates them).
    """
    return numpy.asarray([x.shape[0] + int((x[1:] == x[:-1]).sum()) for x in labels], dtype="int64")


def ctc_loss(
    xp,
    guesses,
    labels: Sequence[numpy.ndarray],
    n_steps: Sequence[int],
    *,
    blank: int = 0,
    from_logits: bool = False,
    scale=None,
    want_grad: bool = True,
    overwrite: bool = False,
):
    """CTC loss of each sequence, and its gradient with respect to the logits.

    For sequence ``i`` with per-step class probabilities ``y_t`` and labels
    ``l_i``::

        loss_i = -log p(l_i | x_i) = -log sum_{paths a collapsing to l_i} prod_t y_t(a_t)
        grad_i[t, c] = scale_i * (y_t(c) - gamma_t(c))

    where ``gamma_t(c)`` is the posterior probability that the path emits
    ``c`` at step ``t`` (forward-backward recursion in log space). The
    gradient is with respect to the logits ``z`` (``y = softmax(z)``) whether
    the guesses are probabilities or logits. Probabilities are clamped at the
    smallest normal float before the log: exact zeros give a large finite
    loss, never NaN. A sequence that no path of ``T_i`` steps can emit
    (``T_i < ctc_min_steps``) has loss ``inf`` and gradient 0.

    Args:
        xp: the array module (numpy or cupy) of ``guesses``.
        guesses: ``(sum_i T_i, C)`` the sequences concatenated in order,
            C-contiguous, float32 or float64: softmax probabilities, or
            logits when ``from_logits``.
        labels: ``N`` host int64 arrays of ``L_i`` labels in ``[0, C)``, none
            equal to ``blank``.
        n_steps: the ``T_i``, adding up to the rows of ``guesses``.
        blank: the column of the blank class.
        from_logits: the guesses are logits (log-softmax computed inside).
        scale: None (1) or an ``(N,)`` array on the guesses' device, in
            their dtype: each sequence's gradient factor.
        want_grad: False runs the forward recursion only; the gradient is None.
        overwrite: the gradient may be written into ``guesses`` (probabilities).

    Returns:
        ``(grad, losses)``: ``grad`` of the guesses' shape and dtype (or None),
        ``losses`` the ``(N,)`` unscaled ``loss_i``.

    Example:
        >>> import numpy
        >>> y = numpy.asarray([[0.6, 0.4], [0.3, 0.7]])  # columns: blank, "a"
        >>> grad, losses = ctc_loss(numpy, y, [numpy.asarray([1])], [2])
        >>> round(float(numpy.exp(-losses[0])), 6)  # paths "a-", "-a", "aa": 0.12 + 0.42 + 0.28
        0.82
    """
    dtype = guesses.dtype
    n_classes = int(guesses.shape[1])
    # The log-probabilities and a spare column C holding NEG, which missing states read.
    log_probs = xp.empty((guesses.shape[0], n_classes + 1), dtype=dtype)
    log_probs[:, n_classes] = NEG
    if from_logits:
        shifted = guesses - guesses.max(axis=1, keepdims=True)
        probs = xp.exp(shifted)
        sums = probs.sum(axis=1, keepdims=True)
        probs /= sums
        xp.subtract(shifted, xp.log(sums), out=log_probs[:, :n_classes])
    else:
        probs = guesses if (overwrite or not want_grad) else guesses.copy()
        xp.log(xp.maximum(guesses, numpy.finfo(dtype).tiny), out=log_probs[:, :n_classes])
    tables = ctc_tables(labels, n_steps, n_classes, blank)
    log_p, occupancy = ctc_forward_backward(xp, log_probs, tables, want_grad=want_grad)
    inverse = xp.asarray(numpy.argsort(tables.order, kind="stable"))
    feasible = numpy.asarray(n_steps, dtype="int64") >= ctc_min_steps(labels)
    losses = -log_p[inverse]
    if not feasible.all():
        feasible_rows = xp.asarray(feasible)
        losses = xp.where(feasible_rows, losses, numpy.inf).astype(dtype, copy=False)
        if scale is None:
            scale = xp.asarray(feasible, dtype=dtype)
        else:
            scale = xp.where(feasible_rows, scale, 0.0).astype(dtype, copy=False)
    if not want_grad:
        return None, losses
    log_probs.fill(0.0)  # no longer needed: it receives the occupancy of each row
    grad = probs
    grad -= scatter_occupancy(xp, occupancy, tables, log_probs)[:, :n_classes]
    if scale is not None:
        grad *= xp.repeat(scale, list(n_steps))[:, None]
    return grad, losses


class CTCTables(NamedTuple):
    """Alignment tables of a batch (host arrays). Row ``k`` holds sequence ``order[k]``."""

    order: numpy.ndarray  # (B,) rows sorted by decreasing T (stable)
    n_active: List[int]  # n_active[k]: rows with T > k, a prefix
    n_states: int  # S = 2 * L_max + 1
    width: int  # W = S + 2 slots per row
    steps: numpy.ndarray  # (B,) T of each row
    gather_rows: numpy.ndarray  # (2, T_max, B) guesses row of step k: forward t = k, backward t = T - 1 - k
    slot_classes: numpy.ndarray  # (2, B, W) class read by each slot (C: the NEG column)
    skip: numpy.ndarray  # (2, B * W) 0 where the skip into (forward) / out of (backward) a state is allowed, else NEG
    beta_start: numpy.ndarray  # (B,) slot of state S_b - 1 in the reversed rows
    end_slots: numpy.ndarray  # (B, 2) slots of states S_b - 1 and S_b - 2
    beta_rows: numpy.ndarray  # (T_max * B,) row of the backward store's (.., W) view holding beta_t
    local_map: numpy.ndarray  # (B, S, U) one-hot of each state's class among its row's U distinct classes
    local_classes: numpy.ndarray  # (B, U) class of each local class (C: none, padding)
    cat_index: Tuple[numpy.ndarray, numpy.ndarray]  # (row, t) of each row of the concatenated guesses


def ctc_tables(labels: List[numpy.ndarray], n_steps: List[int], n_classes: int, blank: int) -> CTCTables:
    """Build the alignment tables on the host (labels are small) for one batch."""
    n_seq = len(labels)
    original_steps = numpy.asarray(n_steps, dtype="int64")
    order = numpy.argsort(-original_steps, kind="stable")
    inverse = numpy.argsort(order, kind="stable")
    steps = original_steps[order]
    label_lengths = numpy.asarray([labels[i].shape[0] for i in order], dtype="int64")
    t_max = int(steps.max()) if n_seq else 0
    l_max = int(label_lengths.max()) if n_seq else 0
    n_states = 2 * l_max + 1
    width = n_states + 2
    # Extended labels: blank, l_1, blank, ..., l_L, blank; missing states read the NEG column C.
    ext = numpy.full((n_seq, n_states), blank, dtype="int64")
    if l_max:
        flat = numpy.concatenate([labels[i] for i in order]).astype("int64")
        row = numpy.repeat(numpy.arange(n_seq), label_lengths)
        col = numpy.arange(flat.shape[0]) - numpy.repeat(numpy.cumsum(label_lengths) - label_lengths, label_lengths)
        ext[row, 2 * col + 1] = flat
    n_real = 2 * label_lengths + 1
    real = numpy.arange(n_states)[None, :] < n_real[:, None]
    classes = numpy.where(real, ext, n_classes)
    slot_classes = numpy.full((2, n_seq, width), n_classes, dtype="int64")
    slot_classes[0, :, 2:] = classes
    slot_classes[1, :, 2:] = classes[:, ::-1]
    # A label state may be entered from two states back unless it repeats that label.
    skip_ok = numpy.zeros((n_seq, n_states), dtype=bool)
    skip_ok[:, 3::2] = (ext[:, 3::2] != ext[:, 1:-2:2]) & real[:, 3::2]
    skip_state = numpy.where(skip_ok, 0.0, NEG)
    skip = numpy.full((2, n_seq, width), NEG)
    skip[0, :, 2:] = skip_state
    # Backward (reversed rows), state s is left for s + 2 when s + 2 may be entered by a skip.
    skip[1, :, 4:] = skip_state[:, n_states - 1 : 1 : -1]
    t_index = numpy.arange(t_max)[:, None]
    last = numpy.maximum(steps - 1, 0)[None, :]
    starts = (numpy.cumsum(original_steps) - original_steps)[order]
    gather_rows = numpy.stack([starts + numpy.minimum(t_index, last), starts + numpy.maximum(last - t_index, 0)])
    gather_rows = numpy.clip(gather_rows, 0, max(int(original_steps.sum()) - 1, 0))
    base = numpy.arange(n_seq) * width + 2
    beta_step = numpy.maximum(steps[None, :] - t_index, 0)  # beta_t is the backward store's step T - t
    # Each row's distinct classes (at most L + 2, the NEG class of missing states included),
    # so that the occupancy costs B T S U, whatever the number of classes C.
    keys, local = numpy.unique(numpy.arange(n_seq)[:, None] * (n_classes + 1) + classes, return_inverse=True)
    first = numpy.searchsorted(keys // (n_classes + 1), numpy.arange(n_seq))
    counts = numpy.diff(numpy.append(first, keys.shape[0]))
    n_local = int(counts.max()) if n_seq else 1
    local = local.reshape(n_seq, n_states) - first[:, None]
    local_map = numpy.zeros((n_seq, n_states, n_local))
    local_map[numpy.arange(n_seq)[:, None], numpy.arange(n_states)[None, :], local] = 1.0
    u_index = numpy.arange(n_local)[None, :]
    keyed = keys[numpy.minimum(first[:, None] + u_index, keys.shape[0] - 1)] % (n_classes + 1)
    local_classes = numpy.where(u_index < counts[:, None], keyed, n_classes)
    cat_row = numpy.repeat(inverse, original_steps)
    cat_t = numpy.arange(int(original_steps.sum())) - numpy.repeat(starts[inverse], original_steps)
    return CTCTables(
        order=order,
        n_active=(steps[None, :] > t_index).sum(axis=1).tolist(),
        n_states=n_states,
        width=width,
        steps=steps,
        gather_rows=gather_rows,
        slot_classes=slot_classes,
        skip=skip.reshape(2, -1),
        beta_start=base + n_states - n_real,
        end_slots=numpy.stack([base + n_real - 1, base + n_real - 2], axis=1),
        beta_rows=(beta_step * n_seq + numpy.arange(n_seq)[None, :]).reshape(-1),
        local_map=local_map,
        local_classes=local_classes,
        cat_index=(cat_row, cat_t),
    )


def _lse_steps(xp, store, emit, skip, n_active: List[int], width: int) -> None:
    """Run the recursion over time in place: ``store[:, k + 1] = step(store[:, k]) + emit[:, k]``.

    ``store``: (D, T_max + 1, B * W), one recursion per ``D`` (forward, then
    backward with reversed rows and time). Slot ``j`` of every row at once::

        store[:, k + 1, j] = logsumexp(store[:, k, j], [.., j - 1], [.., j - 2] + skip[j]) + emit[:, k, j]

    with the maximum subtracted before the exponentials (exact in log space).
    Only the running prefix of rows is touched; the buffers are reused.
    """
    n_dir, size = store.shape[0], store.shape[2]
    item = store.itemsize
    # windows[k, i] is store[:, k, j - i] for the slots j >= 2: three shifted views at once.
    windows = xp.lib.stride_tricks.as_strided(
        store[:, :, 2:],
        shape=(store.shape[1], 3, n_dir, size - 2),
        strides=(store.strides[1], -item, store.strides[0], item),
    )
    terms = xp.empty((3, n_dir, size), dtype=store.dtype)
    top = xp.empty((n_dir, size), dtype=store.dtype)
    total = xp.empty((n_dir, size), dtype=store.dtype)
    for k, n_rows in enumerate(n_active):
        end = n_rows * width
        n = end - 2
        window = windows[k, :, :, :n]
        d, m, s = terms[:, :, :n], top[:, :n], total[:, :n]
        xp.add(window[2], skip[:, 2:end], out=d[2])
        xp.maximum(window[0], window[1], out=m)
        xp.maximum(m, d[2], out=m)
        xp.subtract(window[:2], m, out=d[:2])
        d[2] -= m
        xp.exp(d, out=d)
        d.sum(axis=0, out=s)
        xp.log(s, out=s)
        s += m
        xp.add(s, emit[:, k, 2:end], out=store[:, k + 1, 2:end])


def _take_into(xp, source, indices, axis: Optional[int], out):
    """``xp.take`` into ``out`` without a temporary (numpy buffers ``out`` unless mode is "clip")."""
    if xp is numpy:
        return numpy.take(source, indices, axis=axis, out=out, mode="clip")
    return xp.take(source, indices, axis=axis, out=out)


def ctc_forward_backward(xp, log_probs, tables: CTCTables, *, want_grad: bool = True):
    """Log-likelihood ``log p(l | x)`` of each row, and the class occupancies.

    ``log_probs``: (sum T, C + 1) log-probabilities of the concatenated
    sequences (original order), last column :data:`NEG`. Returns ``(log_p,
    occupancy)``: ``log_p`` (B,) in sorted order and, when ``want_grad``,
    ``occupancy`` (B, T_max, U), per local class (``tables.local_classes``):
    the posterior probability that the path emits class c at step t,
    ``sum_{s: l'_s = c} alpha_t(s) beta_t(s) / (p(l|x) y_t(c))`` (zero past
    each sequence's end and for impossible rows). Without ``want_grad`` only
    alpha is run.
    """
    dtype = log_probs.dtype
    n_seq, width = len(tables.order), tables.width
    t_max, n_dir = len(tables.n_active), 2 if want_grad else 1
    size = n_seq * width
    # One workspace for the emissions and both recursions' values (one allocation, not two).
    work = xp.empty((n_dir * (2 * t_max + 1) * size,), dtype=dtype)
    emit = work[: n_dir * t_max * size].reshape(n_dir, t_max, size)
    store = work[n_dir * t_max * size :].reshape(n_dir, t_max + 1, size)
    for d in range(n_dir):
        rows, classes = xp.asarray(tables.gather_rows[d]), xp.asarray(tables.slot_classes[d])
        _gather_emissions(xp, log_probs, rows, classes, emit[d])
    store.fill(NEG)
    store[0, 0, 2::width] = 0.0  # alpha_{-1}: all mass on state 0, so alpha_0 = y_0 on states 0 and 1
    if want_grad:
        store[1, 0, xp.asarray(tables.beta_start)] = 0.0  # beta_T: all mass on the last state
    _lse_steps(xp, store, emit, xp.asarray(tables.skip[:n_dir], dtype=dtype), tables.n_active, width)
    ends = store[0, xp.asarray(tables.steps)[:, None], xp.asarray(tables.end_slots)]
    log_p = xp.logaddexp(ends[:, 0], ends[:, 1])
    if not want_grad:
        return log_p, None
    # log gamma_t(s) = log alpha_t(s) + log beta_t(s) - log y_t(l'_s) - log p: both
    # recursions include step t's emission. Computed in the emission buffers.
    shape = (t_max, n_seq, width)
    gamma = xp.subtract(store[0, 1:], emit[0], out=emit[0]).reshape(shape)[:, :, 2:]
    beta = _take_into(xp, store[1].reshape(-1, width), xp.asarray(tables.beta_rows), 0, emit[1].reshape(-1, width))
    gamma += beta.reshape(shape)[:, :, : 1 : -1]
    # At every step of a feasible row, sum_s alpha_t(s) beta_t(s) / y_t(l'_s) = p(l | x).
    # Normalising each step by its own sum (after subtracting its maximum) rather than
    # by log p gives the same gamma, and stays exact where alpha + beta - log p
    # cancels badly: float32 logits of 1e20 give log-values of 1e21 whose rounding
    # (1e14) would overflow the exponential. Steps past a row's end and impossible
    # rows keep gamma = 0.
    live = numpy.arange(t_max)[:, None] < tables.steps[None, :]
    live = xp.asarray(live) & (log_p > 0.5 * NEG)[None, :]
    top = xp.where(live, gamma.max(axis=2), 0.0).astype(dtype, copy=False)
    gamma -= top[:, :, None]
    xp.exp(gamma, out=gamma)
    occupancy = xp.matmul(gamma.transpose(1, 0, 2), xp.asarray(tables.local_map, dtype=dtype))
    total = occupancy.sum(axis=2)  # (B, T): at least 1 (the maximum's exp) at live steps
    occupancy /= xp.where(live.T, total, 1.0).astype(dtype, copy=False)[:, :, None]
    return log_p, occupancy


def scatter_occupancy(xp, occupancy, tables: CTCTables, out):
    """Write the occupancy of each row of the concatenated guesses into ``out`` ((sum T, C + 1), zeroed).

    ``occupancy``: (B, T_max, U) from :func:`ctc_forward_backward`, per local
    class; the classes of one row are distinct, so a plain assignment suffices
    (padding goes to the spare column C).
    """
    cat_row, cat_t = (xp.asarray(a) for a in tables.cat_index)
    columns = xp.asarray(tables.local_classes)[cat_row]
    out[xp.arange(cat_row.shape[0])[:, None], columns] = occupancy[cat_row, cat_t]
    return out


def _gather_emissions(xp, log_probs, rows, slot_classes, out) -> None:
    """``out[k, b * W + j] = log_probs[rows[k, b], slot_classes[b, j]]``."""
    t_max, n_seq = rows.shape
    n_cols = log_probs.shape[1]
    if n_cols <= slot_classes.shape[1]:  # few classes: copy each step's rows, then pick the slots' columns
        step_rows = log_probs[rows].reshape(t_max, n_seq * n_cols)
        columns = (slot_classes + xp.arange(n_seq)[:, None] * n_cols).reshape(-1)
        _take_into(xp, step_rows, columns, 1, out)
    else:  # many classes: one flat index per slot, no copy of whole rows
        index = rows[:, :, None] * n_cols + slot_classes[None, :, :]
        _take_into(xp, log_probs.reshape(-1), index.reshape(out.shape), None, out)
