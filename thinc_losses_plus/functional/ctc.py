"""Maths of the CTC loss: alignment tables and the forward-backward recursion.

Plain functions, no settings and no truth parsing: :func:`ctc_loss` takes the
array module ``xp`` first (as Thinc's ``ops``), then the concatenated
guesses, the label sequences (host int64 arrays) and the number of steps of
each sequence, and returns the gradient with respect to the logits together
with the unnormalised loss ``-log p(l_i | x_i)`` of each sequence.

How the recursion runs: each sequence of the batch is two rows of a padded
lattice of ``S = 2 L_max + 1`` states (blank, l_1, blank, ..., l_L, blank),
its forward (alpha) row and its backward (beta) row, which runs the sequence
reversed in time (from its own last step) and in states. The Python loop is
over time steps only, one step for the whole batch and both directions:
eleven whole-array operations on one contiguous vector, whatever the number
of sequences. Sorted by decreasing length, the alpha rows of sequences
B - 1, ..., 0 and then the beta rows of sequences 0, ..., B - 1, the rows
still running at step ``k`` form one contiguous range of that vector.

Layout of one step: ``2 B`` rows of ``W = S + 1`` slots (the states and one
padding slot between rows), after one leading row of padding, all flat, so
that slot ``j`` reads slots ``j``, ``j - 1`` and ``j - 2`` of the previous step
as shifted slices of one vector. Padding slots and missing states carry the
log-probability :data:`NEG`, so they drop out of every sum without masks,
and an impossible alignment gives a log-likelihood near NEG, not NaN.

Emissions and occupancies are moved by whole rows, not by single states:
the log-probabilities of the blank and of each label are picked once per
guesses row and laid out as an alpha row; a beta row is an alpha row
reversed, and a flat reversal of the whole table reverses every row at
once. Each step's emissions are a gather of table rows. All the large
buffers are views of one workspace (one allocation per call).
"""
import math
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
    lengths = numpy.asarray([x.shape[0] for x in labels], dtype="int64")
    n_flat = int(lengths.sum())
    if n_flat < 2:
        return lengths
    flat = numpy.concatenate(labels)
    # repeats[k]: equal adjacent pairs (j - 1, j) with j <= k; a sequence's own pairs lie in (start, end).
    repeats = numpy.concatenate([[0], numpy.cumsum(flat[1:] == flat[:-1])])
    ends = numpy.cumsum(lengths)
    starts = numpy.minimum(ends - lengths, n_flat - 1)
    last = numpy.maximum(ends - 1, starts)
    return lengths + repeats[last] - repeats[starts]


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
    logit_range: Optional[Tuple[float, float]] = None,
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
        overwrite: the gradient may be written into ``guesses``.
        logit_range: with ``from_logits``, the smallest and largest logit
            (host floats) when the caller knows them; None: unknown. Only
            speed depends on it: a narrow range lets one number replace each
            row's maximum in the log-softmax, and bounds the recursion's
            rounding (see :func:`_bounded_log_values`).

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
    n_rows, n_classes = (int(n) for n in guesses.shape)
    tables = ctc_tables(labels, n_steps, n_classes, blank, n_dir=2 if want_grad else 1)
    class_index = xp.asarray(tables.class_index)
    # Log-probabilities of the blank, of each label and NEG, per guesses row: (sum T, 2 + L_max).
    class_lp = xp.empty((n_rows, class_index.shape[0] + 1), dtype=dtype)
    class_lp[:, -1] = NEG
    picked = class_lp[:, :-1]
    if from_logits:
        # Shifted by each row's maximum (a short-axis reduction), or by the largest logit
        # where every exp(z - high) is a normal float: logits spanning less than 60 (float32)
        # or 600 (float64), the common case of a network's outputs.
        span = None if logit_range is None else logit_range[1] - logit_range[0]
        narrow = span is not None and span <= (60.0 if dtype.itemsize <= 4 else 600.0)
        top = float(logit_range[1]) if narrow else guesses.max(axis=1, keepdims=True)
        probs = xp.subtract(guesses, top, out=guesses if overwrite else None)
        _take_into(xp, probs, class_index.T, picked)
        xp.exp(probs, out=probs)
        sums = _row_sums(xp, probs)
        picked -= xp.log(sums)[:, None]
        row_factor = 1.0 / sums
        log_bound = None if span is None else span + math.log(n_classes)
    else:
        _take_into(xp, guesses, class_index.T, picked)
        xp.log(xp.maximum(picked, numpy.finfo(dtype).tiny, out=picked), out=picked)
        probs = guesses if (overwrite or not want_grad) else guesses.copy()
        row_factor = None
        log_bound = -math.log(numpy.finfo(dtype).tiny)
    by_log_p = _bounded_log_values(dtype, tables.n_steps, log_bound)
    log_p, occupancy = ctc_forward_backward(xp, class_lp, tables, want_grad=want_grad, by_log_p=by_log_p)
    inverse = xp.asarray(tables.inverse)
    losses = -xp.take(log_p, inverse)
    feasible = numpy.asarray(n_steps, dtype="int64") >= ctc_min_steps(labels)
    if not feasible.all():
        feasible_rows = xp.asarray(feasible)
        losses = xp.where(feasible_rows, losses, numpy.inf).astype(dtype, copy=False)
        if scale is None:
            scale = xp.asarray(feasible, dtype=dtype)
        else:
            scale = xp.where(feasible_rows, scale, 0.0).astype(dtype, copy=False)
    if not want_grad:
        return None, losses
    # grad = scale * (y - gamma): y scaled per guesses row, gamma per row of its occupancy.
    weights = None
    if scale is not None:
        weights = xp.repeat(scale, list(n_steps))
        row_factor = weights if row_factor is None else row_factor * weights
    if row_factor is not None:
        probs *= row_factor[:, None]
    grad = probs
    picked = xp.take(occupancy, xp.asarray(tables.occupancy_index))  # (U + 1, sum T)
    # Each step's total (gamma sums to 1 over the classes); an impossible row's may be 0.
    factor = 1.0 / xp.maximum(picked[-1], numpy.finfo(dtype).tiny)
    if weights is not None:
        factor *= weights
    gamma = picked[:-1]
    gamma *= factor
    flat = grad.reshape(-1)
    flat[class_index] -= gamma  # a class repeated in a row's labels repeats one value
    return grad, losses


class CTCTables(NamedTuple):
    """Alignment tables of a batch (host arrays). Sequence ``order[b]`` is lattice row ``b``.

    The lattice rows of one step: alpha of sequences B - 1, ..., 0 (slots: the
    states, then padding), then beta of sequences 0, ..., B - 1 (padding, then
    the states reversed), so that the sequences still running form one
    contiguous range around the middle.
    """

    order: numpy.ndarray  # (B,) sequences sorted by decreasing T (stable)
    inverse: numpy.ndarray  # (B,) lattice row of each sequence
    n_dir: int  # 1 (alpha) or 2 (alpha and beta)
    n_states: int  # S = 2 * L_max + 1
    width: int  # W = S + 1 slots per lattice row
    n_steps: int  # T_max
    groups: List[Tuple[int, int, int, int]]  # (first step, end step, first slot, end slot): the running range
    init_slots: numpy.ndarray  # slots of step 0 holding log 1
    skip: numpy.ndarray  # (R * W,) 0 where slot j may be entered from slot j - 2, else NEG
    emit_rows: numpy.ndarray  # (T_max, R) row of the emission table read at step k
    class_index: numpy.ndarray  # (1 + L_max, sum T) flat guesses index of the blank and each label, per row
    slot_columns: numpy.ndarray  # (W,) column of (blank, labels..., NEG) read by each slot of an alpha row
    end_slots: numpy.ndarray  # (B, 2) flat store index of alpha_{T-1} at states S_b - 1 and S_b - 2
    beta_rows: numpy.ndarray  # (T_max, B) row of the (.., W) lattice view read for beta (reversed)
    local_map: numpy.ndarray  # (B, W, U + 1) per alpha row: slot s has class u; last column all ones
    occupancy_index: numpy.ndarray  # (U + 1, sum T) flat index into the (B, T_max, U + 1) occupancy


def ctc_tables(
    labels: Sequence[numpy.ndarray], n_steps: Sequence[int], n_classes: int, blank: int, *, n_dir: int = 2
) -> CTCTables:
    """Build the alignment tables on the host (labels are small) for one batch."""
    n_seq = len(labels)
    steps_in = numpy.asarray(n_steps, dtype="int64").reshape(n_seq)
    lengths_in = numpy.asarray([x.shape[0] for x in labels], dtype="int64").reshape(n_seq)
    order = numpy.argsort(-steps_in, kind="stable")
    inverse = numpy.argsort(order, kind="stable")
    steps, lengths = steps_in[order], lengths_in[order]
    t_max = int(steps.max()) if n_seq else 0
    l_max = int(lengths.max()) if n_seq else 0
    n_states, n_rows = 2 * l_max + 1, n_seq * n_dir
    width = n_states + 1
    n_total = int(steps_in.sum())
    starts_in = numpy.cumsum(steps_in) - steps_in
    # classes[i] = blank, l_1, ..., l_L (padded with the blank: missing states are never reached).
    classes = numpy.full((n_seq, 1 + l_max), blank, dtype="int64")
    if l_max:
        flat = numpy.concatenate(labels).astype("int64", copy=False)
        seq = numpy.repeat(numpy.arange(n_seq), lengths_in)
        col = numpy.arange(flat.shape[0]) - numpy.repeat(numpy.cumsum(lengths_in) - lengths_in, lengths_in)
        classes[seq, 1 + col] = flat
    row_seq = numpy.repeat(numpy.arange(n_seq), steps_in)  # sequence of each guesses row
    row_t = numpy.arange(n_total) - starts_in[row_seq]
    row_base = numpy.arange(n_total) * n_classes
    state = numpy.arange(n_states)
    # Skips: label state 2i + 1 may be entered from 2i - 1 unless it repeats that label.
    sorted_classes = classes[order]
    n_real = 2 * lengths + 1
    skip_ok = numpy.zeros((n_seq, n_states), dtype=bool)
    if l_max > 1:
        labs = sorted_classes[:, 1:]
        skip_ok[:, 3::2] = (labs[:, 1:] != labs[:, :-1]) & (numpy.arange(1, l_max) < lengths[:, None])
    skip_state = numpy.where(skip_ok, 0.0, NEG)
    skip = numpy.full((n_dir, n_seq, width), NEG)
    skip[0, :, :n_states] = skip_state[::-1]
    # Step 0 holds alpha_{-1} (all mass on state 0) and beta_T (all mass on state S_b - 1).
    alpha_slot = (n_seq - numpy.arange(n_seq)) * width  # slot of state 0 of sequence b's alpha row
    init = [alpha_slot]
    step = numpy.arange(t_max)[:, None]
    live = step < steps[None, :]
    starts = starts_in[order]
    emit_rows = numpy.zeros((t_max, n_dir, n_seq), dtype="int64")
    emit_rows[:, 0] = numpy.where(live, starts + step, 0)[:, ::-1]
    if n_dir == 2:
        # Reversed row 1 + r (r = S - 1 - s) is entered from r - 2 when state s + 2 may be skipped into.
        skip[1, :, 3:] = skip_state[:, n_states - 1 : 1 : -1]
        init.append((1 + n_seq + numpy.arange(n_seq)) * width + 1 + n_states - n_real)
        # The emission table's second half is its first reversed: row 2 n - 1 - c reverses row c.
        emit_rows[:, 1] = 2 * n_total - 1 - numpy.where(live, starts + steps - 1 - step, 0)
    row_len = (n_rows + 1) * width
    end_state = steps * row_len + alpha_slot + n_real - 1  # state S_b - 1
    n_active = live.sum(axis=1)
    cuts = [0] + (numpy.flatnonzero(numpy.diff(n_active)) + 1).tolist() + [t_max]
    groups = []
    for first, end in zip(cuts[:-1], cuts[1:]):
        if end > first:
            n = int(n_active[first])
            groups.append((first, end, (n_seq - n) * width, (n_seq + n * (n_dir - 1)) * width))
    # beta, read reversed (see ctc_forward_backward): entry (t', b) holds beta_{T_max - 1 - t'} of
    # sequence b, which lies in step T_b - t of row 1 + B + b of the (.., W) view of the lattice.
    t_rev = t_max - 1 - step
    beta_row = (steps[None, :] - t_rev) * (n_rows + 1) + 1 + n_seq + numpy.arange(n_seq)
    beta_rows = numpy.where(t_rev < steps[None, :], beta_row, 0)
    # Local classes: the blank and each label (a class repeated in the labels repeats its column,
    # with the same occupancy); local_map[rho, s, u]: state s of alpha row rho has class u.
    state_col = numpy.where(state % 2, (state + 1) // 2, 0)
    hits = sorted_classes[:, state_col][:, :, None] == sorted_classes[:, None, :]
    local_map = numpy.zeros((n_seq, width, 2 + l_max))
    local_map[:, :n_states, :-1] = hits & (state[None, :] < n_real[:, None])[:, :, None]
    local_map[:, :n_states, -1] = 1.0
    class_index = numpy.repeat(numpy.ascontiguousarray(classes.T), steps_in, axis=1) + row_base  # (1 + L, sum T)
    rho = (n_seq - 1 - inverse)[row_seq]  # alpha row of each guesses row
    n_local = 2 + l_max
    return CTCTables(
        order=order,
        inverse=inverse,
        n_dir=n_dir,
        n_states=n_states,
        width=width,
        n_steps=t_max,
        groups=groups,
        init_slots=numpy.concatenate(init),
        skip=skip.reshape(-1),
        emit_rows=emit_rows.reshape(t_max, n_rows),
        class_index=class_index,
        slot_columns=numpy.append(state_col, l_max + 1),
        end_slots=numpy.stack([end_state, end_state - 1], axis=1),
        beta_rows=beta_rows,
        local_map=local_map[::-1],
        occupancy_index=(rho * t_max + row_t) * n_local + numpy.arange(n_local)[:, None],
    )


def _bounded_log_values(dtype, n_steps: int, log_bound: Optional[float]) -> bool:
    """Whether each step's occupancies may be normalised by ``log p`` rather than their maximum.

    At every step, ``sum_s alpha_t(s) beta_t(s) / y_t(l'_s) = p(l | x)``: the
    largest term lies within ``log S`` of ``log p``. That holds for the
    computed values while their rounding stays far below the exponential's
    range: log-values are at most ``T * log_bound`` (``log_bound``: the largest
    ``-log y``), each of the ``T`` steps rounds by one unit of that, so the
    error is about ``T^2 log_bound`` ulps: up to 1e7 (float32) or 1e14
    (float64) it stays below 10. Beyond (float32 logits of 1e20: log-values
    of 1e21, rounding of 1e14) the maximum over the states, a slower
    short-axis reduction, is used.
    """
    if log_bound is None:
        return False
    limit = 1e7 if numpy.dtype(dtype).itemsize <= 4 else 1e14
    return float(n_steps) ** 2 * log_bound <= limit


def _take_into(xp, source, indices, out, axis=None):
    """``out[...] = xp.take(source, indices, axis)`` without a temporary where the module allows it."""
    if xp is numpy:  # numpy buffers ``out`` unless mode is "clip" (the indices are in range)
        numpy.take(source, indices, axis=axis, out=out, mode="clip")
    else:
        out[...] = xp.take(source, indices, axis=axis)


def _row_sums(xp, x):
    """Sums of the rows of a C-contiguous ``(n, C)`` array (one product; a short-axis sum is slow)."""
    return xp.matmul(x, xp.ones((x.shape[1],), dtype=x.dtype))


def _max_over_axis1(xp, x):
    """``x.max(axis=1)`` of a 3-d array by halving: whole-array maxima of overlapping halves."""
    while x.shape[1] > 1:
        half = (x.shape[1] + 1) // 2
        x = xp.maximum(x[:, :half], x[:, x.shape[1] - half :])
    return x[:, 0]


def _recursion(xp, store, emit, skip, groups, width: int) -> None:
    """Run the recursion over time in place: ``store[k + 1] = step(store[k]) + emit[k]``.

    ``store``: (T_max + 1, (R + 1) W), one leading row of padding, then the
    lattice rows of every sequence and direction. Slot ``j`` of the rows, for
    every running row at once::

        store[k + 1, W + j] = logsumexp(store[k, W + j], [.., W + j - 1], [.., W + j - 2] + skip[j]) + emit[k, j]

    with the maximum subtracted before the exponentials (exact in log space):
    eleven whole-array operations per step. Only the running range of rows is
    touched; the buffers are reused.
    """
    add, subtract, maximum, exp, log = xp.add, xp.subtract, xp.maximum, xp.exp, xp.log
    item = store.itemsize
    for first, end, lo, hi in groups:
        n = hi - lo
        terms = xp.empty((3, n), dtype=store.dtype)
        top, total = xp.empty((n,), dtype=store.dtype), xp.empty((n,), dtype=store.dtype)
        pair, t0, t1, t2 = terms[:2], terms[0], terms[1], terms[2]
        gate = skip[lo:hi]
        lo += width  # the leading row of padding
        # Slots j and j - 1 of each step: one shifted view (stride -1 between the two).
        strides = (store.strides[0], -item, item)
        pairs = xp.lib.stride_tricks.as_strided(store[first:, lo:], (end - first, 2, n), strides)
        skipped = store[first:end, lo - 2 : lo - 2 + n]
        outs = store[first + 1 : end + 1, lo : lo + n]
        for a01, a2, e, out in zip(pairs, skipped, emit[first:end, lo - width : hi], outs):
            add(a2, gate, out=t2)
            maximum(a01[0], a01[1], out=top)
            maximum(top, t2, out=top)
            subtract(a01, top, out=pair)
            subtract(t2, top, out=t2)
            exp(terms, out=terms)
            add(t0, t1, out=total)
            add(total, t2, out=total)
            log(total, out=total)
            add(total, top, out=total)
            add(total, e, out=out)


def ctc_forward_backward(xp, class_lp, tables: CTCTables, *, want_grad: bool = True, by_log_p: bool = False):
    """Log-likelihood ``log p(l | x)`` of each row, and the class occupancies.

    ``class_lp``: (sum T, 2 + L_max) log-probabilities of the blank, of each
    label and :data:`NEG`, per row of the concatenated guesses (original
    order). Returns ``(log_p, occupancy)``: ``log_p`` (B,) in sorted order
    and, when ``want_grad``, ``occupancy`` (B, T_max, U + 1), per alpha row
    (sequences B - 1, ..., 0) and local class (``tables.local_map``: the
    blank, then each label), the posterior mass ``sum_{s: l'_s = c}
    alpha_t(s) beta_t(s) / y_t(c)`` up to a factor per step, the last column
    its sum over the states (steps past a row's end and
    impossible rows hold finite noise; their gradient is never read or is
    scaled by 0). Without ``want_grad`` only alpha is run. ``by_log_p``:
    normalise each step by ``log p`` instead of its most likely state (see
    :func:`_bounded_log_values`); impossible rows are normalised by 0.
    """
    dtype = class_lp.dtype
    n_seq, n_dir, width = len(tables.order), tables.n_dir, tables.width
    t_max, n_rows = tables.n_steps, len(tables.order) * tables.n_dir
    n_total = class_lp.shape[0]
    # One workspace (one allocation) for the lattice, the emissions and the occupancies.
    sizes = [
        (t_max + 1) * (n_rows + 1) * width,  # the lattice of every step
        t_max * n_rows * width,  # the emissions of every step
        max(n_dir * n_total, n_seq * t_max if want_grad else 0) * width,  # emission table, then beta's rows
        n_seq * t_max * width if want_grad else 0,  # gamma
    ]
    work = xp.empty((sum(sizes),), dtype=dtype)
    ends = numpy.cumsum(sizes)
    store = work[: ends[0]].reshape(t_max + 1, (n_rows + 1) * width)
    emit = work[ends[0] : ends[1]].reshape(t_max, n_rows, width)
    spare = work[ends[1] : ends[2]]
    # Each guesses row's emissions laid out as an alpha row (the states, then padding): rows
    # [0, n); reversed as a beta row (padding, then the states reversed): rows [n, 2 n), which
    # a flat reversal gives at once (row 2 n - 1 - c is row c reversed).
    table = spare[: n_dir * n_total * width].reshape(n_dir * n_total, width)
    _take_into(xp, class_lp, xp.asarray(tables.slot_columns), table[:n_total], axis=1)
    if n_dir == 2:
        table[n_total:] = table[:n_total].reshape(-1)[::-1].reshape(n_total, width)
    _take_into(xp, table, xp.asarray(tables.emit_rows), emit, axis=0)
    store.fill(NEG)
    store[0, xp.asarray(tables.init_slots)] = 0.0
    skip = xp.asarray(tables.skip, dtype=dtype)
    _recursion(xp, store, emit.reshape(t_max, n_rows * width), skip, tables.groups, width)
    end_values = xp.take(store, xp.asarray(tables.end_slots))
    log_p = xp.logaddexp(end_values[:, 0], end_values[:, 1])
    if not want_grad:
        return log_p, None
    # log gamma_t(s) = log alpha_t(s) + log beta_t(s) - log y_t(l'_s) - log p: both recursions
    # include step t's emission. Each step is normalised by its sum in the end (the last
    # column); before the exponential, by log p where rounding allows it, else by the step's
    # most likely state, which stays exact where alpha + beta - log p cancels badly.
    # Layout (T, B, W) of the alpha rows (sequences B - 1, ..., 0): alpha and the emissions are
    # views of the lattice, beta rows gathered so that their flat reversal aligns with alpha.
    alpha = store[1:, width : (n_seq + 1) * width].reshape(t_max, n_seq, width)
    beta = spare[: n_seq * t_max * width].reshape(t_max, n_seq, width)
    _take_into(xp, store.reshape(-1, width), xp.asarray(tables.beta_rows), beta, axis=0)
    gamma = work[ends[2] :].reshape(t_max, n_seq, width)
    xp.add(alpha, beta.reshape(-1)[::-1].reshape(t_max, n_seq, width), out=gamma)
    gamma -= emit[:, :n_seq]
    if by_log_p:
        gamma -= xp.where(log_p > 0.5 * NEG, log_p, 0.0).astype(dtype, copy=False)[::-1, None]
    else:
        gamma -= gamma.max(axis=2, keepdims=True)
    xp.exp(gamma, out=gamma)
    return log_p, xp.matmul(gamma.transpose(1, 0, 2), xp.asarray(tables.local_map, dtype=dtype))
