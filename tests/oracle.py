"""PyTorch as the oracle: autograd of a formula, compared with our (grad, loss)."""
import numpy
import torch


def torch_loss_and_grad(fn, guesses):
    x = torch.tensor(guesses, dtype=torch.float64, requires_grad=True)
    loss = fn(x)
    loss.backward()
    return x.grad.numpy(), float(loss.detach())


def assert_matches(result, expected, rtol=2e-5, atol=1e-6):
    (grad, loss), (grad_t, loss_t) = result, expected
    numpy.testing.assert_allclose(loss, loss_t, rtol=rtol, atol=atol)
    numpy.testing.assert_allclose(grad, grad_t, rtol=rtol, atol=atol)
