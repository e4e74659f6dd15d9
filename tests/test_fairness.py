"""Fairness: correct work written the way students write it gets full marks, and each common
mistake costs points on its own unit only.

One grading run (the Python API, two jobs, on the CPU) over a class built from the course's own
exercise notebooks, with one unit's solution cell replaced per variant: correct variants (prints,
plots, progress bars, timers, numpy / python / torch sampling, DataLoader, optimizers or updates by
hand, helpers, other spellings of the same maths) and wrong ones (momentum, forgotten zero_grad,
sampling that never reaches the last picture, summed losses, autograd in the rule by hand, ...).
Each student holds only the lab(s) its variants belong to, to keep the run short; each test then
reads that run's results for one property.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from conftest import code, finals_of, grade_class, in_background, shared_root, write_student

FULL = {"Linear": 15, "softmax": 15, "one_layer_net": 15, "train_online": 15, "template_update": 15,
        "train_minibatch": 25}
LAB = {"Linear": "lab01", "softmax": "lab02", "one_layer_net": "lab03", "train_online": "lab04",
       "template_update": "lab05", "train_minibatch": "lab05"}
UNITS_OF = {}
for _unit, _lab in LAB.items():
    UNITS_OF.setdefault(_lab, []).append(_unit)

# ================================================================================================
# Correct variants
# ================================================================================================

# ---- Linear (lab01) ----------------------------------------------------------------------------
LINEAR_OK = {
    # torch.matmul, nn.init.uniform_ in a reset_parameters method, register_parameter for no bias
    "matmul_init_uniform": code("""
        import math

        class Linear(nn.Module):
            def __init__(self, in_features, out_features, bias=True):
                super().__init__()
                self.in_features = in_features
                self.out_features = out_features
                self.weight = nn.Parameter(torch.empty(out_features, in_features))
                if bias:
                    self.bias = nn.Parameter(torch.empty(out_features))
                else:
                    self.register_parameter("bias", None)
                self.reset_parameters()

            def reset_parameters(self):
                bound = 1 / math.sqrt(self.in_features)
                nn.init.uniform_(self.weight, -bound, bound)
                if self.bias is not None:
                    nn.init.uniform_(self.bias, -bound, bound)

            def forward(self, x):
                out = torch.matmul(x, self.weight.t())
                if self.bias is not None:
                    out += self.bias
                return out
        """),
    # PyTorch's own init: kaiming_uniform_(a=sqrt(5)) gives the bound 1/sqrt(fan_in); einsum; bias None
    "kaiming_einsum": code("""
        import math
        import torch.nn.init as init

        class Linear(nn.Module):
            def __init__(self, in_features, out_features, bias=True):
                super(Linear, self).__init__()
                self.weight = nn.Parameter(torch.Tensor(out_features, in_features))
                init.kaiming_uniform_(self.weight, a=math.sqrt(5))
                if bias:
                    fan_in = in_features
                    bound = 1 / math.sqrt(fan_in)
                    self.bias = nn.Parameter(torch.Tensor(out_features).uniform_(-bound, bound))
                else:
                    self.bias = None

            def forward(self, x):
                y = torch.einsum("...i,oi->...o", x, self.weight)
                if self.bias is not None:
                    y = y + self.bias
                return y
        """),
    # x @ W.t(), init from torch.rand, prints at import and in __init__
    "at_t_rand_prints": code("""
        print("defining my own Linear layer")

        class Linear(nn.Module):
            def __init__(self, in_features, out_features, bias=True):
                super().__init__()
                k = 1.0 / in_features
                self.weight = nn.Parameter(-k ** 0.5 + 2 * k ** 0.5 * torch.rand(out_features, in_features))
                self.bias = nn.Parameter(-k ** 0.5 + 2 * k ** 0.5 * torch.rand(out_features)) if bias else None
                print(f"Linear({in_features}, {out_features}, bias={bias}) created")

            def forward(self, x):
                if self.bias is None:
                    return x @ self.weight.t()
                return x @ self.weight.t() + self.bias
        """),
    # torch.mm on a batch, a vector made a batch of one and back; broadcasting the bias by hand
    "mm_unsqueeze": code("""
        class Linear(nn.Module):
            def __init__(self, in_features, out_features, bias=True):
                super().__init__()
                bound = in_features ** -0.5
                w = torch.zeros(out_features, in_features)
                w.uniform_(-bound, bound)
                self.weight = nn.Parameter(w)
                if bias:
                    self.bias = nn.Parameter(torch.zeros(out_features).uniform_(-bound, bound))
                else:
                    self.register_parameter("bias", None)

            def forward(self, x):
                vector = x.dim() == 1
                if vector:
                    x = x.unsqueeze(0)
                y = torch.mm(x, self.weight.transpose(0, 1))
                if self.bias is not None:
                    y = y + self.bias.unsqueeze(0).expand_as(y)
                return y.squeeze(0) if vector else y
        """),
    # what the allow-list of modules must let through: imports by name, type hints, a literal format
    "parameter_init_typing_format": code("""
        import math
        from typing import Optional

        import torch.nn.init as init
        from torch.nn.parameter import Parameter

        class Linear(nn.Module):
            def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
                super().__init__()
                self.weight = Parameter(torch.empty(out_features, in_features))
                self.bias: Optional[Parameter] = Parameter(torch.empty(out_features)) if bias else None
                bound = 1 / math.sqrt(in_features)
                init.uniform_(self.weight, -bound, bound)
                if self.bias is not None:
                    init.uniform_(self.bias, -bound, bound)
                print("{} {}x{}".format(type(self).__name__, out_features, in_features))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out = x.matmul(self.weight.T)
                return out if self.bias is None else out + self.bias
        """),
}

# ---- softmax (lab02) ---------------------------------------------------------------------------
SOFTMAX_OK = {
    "logsumexp": code("""
        def softmax(x, dim=-1):
            return torch.exp(x - torch.logsumexp(x, dim=dim, keepdim=True))
        """),
    "max_values": code("""
        def softmax(x, dim=-1):
            m = x.max(dim, keepdim=True).values
            e = (x - m).exp()
            return e / e.sum(dim, keepdim=True)
        """),
    "torch_max_detached_print": code("""
        def softmax(x, dim=-1):
            x_max, _ = torch.max(x, dim=dim, keepdim=True)
            x_exp = torch.exp(x - x_max.detach())
            partition = torch.sum(x_exp, dim=dim, keepdim=True)
            return x_exp / partition

        print(softmax(torch.tensor([-2.0, -0.5, 2.0, 1.5])))
        """),
    "helper_positive_dim": code("""
        def _stable_exp(x, dim):
            return torch.exp(x - x.amax(dim=dim, keepdim=True))

        def softmax(x, dim=-1):
            if dim < 0:
                dim = x.dim() + dim
            e = _stable_exp(x, dim)
            return torch.div(e, e.sum(dim=dim, keepdim=True))
        """),
    "clone_then_in_place": code("""
        def softmax(x, dim=-1):
            y = x.clone()
            y -= y.max(dim=dim, keepdim=True)[0]
            y = y.exp()
            return y / y.sum(dim=dim, keepdim=True)
        """),
    "functools_collections_fstring": code("""
        import functools
        from collections import namedtuple

        Checked = namedtuple("Checked", "dim shape")

        @functools.lru_cache(maxsize=None)
        def _note(dim: int) -> str:
            return f"softmax along dim {dim}"

        def softmax(x, dim=-1):
            m = torch.amax(x, dim=dim, keepdim=True)
            e = torch.exp(x - m)
            return e / torch.sum(e, dim=dim, keepdim=True)
        """),
}

# ---- one_layer_net (lab03) ---------------------------------------------------------------------
NET_OK = {
    "super_F_softmax": code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super(one_layer_net, self).__init__()
                self.mylayer = nn.Linear(input_size, output_size, bias=True)

            def forward(self, x):
                scores = self.mylayer(x)
                return F.softmax(scores, dim=-1)
        """),
    "torch_softmax_len_shape": code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super(one_layer_net, self).__init__()
                self.mylayer = nn.Linear(input_size, output_size)

            def forward(self, x):
                y = self.mylayer(x)
                prob = torch.softmax(y, dim=len(x.shape) - 1)
                return prob
        """),
    "method_softmax_print": code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super().__init__()
                self.mylayer = torch.nn.Linear(input_size, output_size, bias=True)
                print("one_layer_net:", input_size, "->", output_size)

            def forward(self, x):
                return self.mylayer(x).softmax(dim=x.dim() - 1)
        """),
    "softmax_module": code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super().__init__()
                self.mylayer = nn.Linear(input_size, output_size, bias=True)
                self.prob = nn.Softmax(dim=-1)

            def forward(self, x):
                return self.prob(self.mylayer(x))
        """),
    "hand_softmax": code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super(one_layer_net, self).__init__()
                self.mylayer = nn.Linear(input_size, output_size, bias=True)

            def forward(self, x):
                s = self.mylayer(x)
                e = torch.exp(s - s.max(dim=-1, keepdim=True).values)
                return e / e.sum(dim=-1, keepdim=True)
        """),
    "torch_softmax_minus_one": code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super().__init__()
                self.mylayer = nn.Linear(in_features=input_size, out_features=output_size)

            def forward(self, x):
                x = self.mylayer(x)
                x = torch.softmax(x, dim=-1)
                return x
        """),
    # issue 14: both failed "exactly one layer, mylayer" with "found none"
    "annotated_mylayer": code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super().__init__()
                self.mylayer: nn.Linear = nn.Linear(input_size, output_size)

            def forward(self, x):
                return torch.softmax(self.mylayer(x), dim=-1)
        """),
    "add_module_mylayer": code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super().__init__()
                self.add_module("mylayer", nn.Linear(input_size, output_size, bias=True))

            def forward(self, x):
                return F.softmax(self.mylayer(x), dim=-1)
        """),
}

# ---- train_online (lab04) ----------------------------------------------------------------------
ONLINE_OK = {
    "tqdm_numpy_nllloss": code("""
        import numpy as np
        from tqdm import tqdm

        def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
            X = train_data.reshape(-1, 784)
            N = X.shape[0]
            criterion = nn.NLLLoss()
            optimizer = torch.optim.SGD(net.parameters(), lr=lr)
            for it in tqdm(range(n_iter)):
                i = np.random.randint(N)
                x = X[i].unsqueeze(0)
                y = train_label[i].unsqueeze(0)
                optimizer.zero_grad()
                prob = net(x)
                loss = criterion(torch.log(prob), y)
                loss.backward()
                optimizer.step()
            return net
        """),
    # python's random.randint is inclusive: 0 .. N - 1 is every picture
    "tqdm_auto_random_randint_data_update": code("""
        import random
        from tqdm.auto import tqdm

        def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
            data = train_data.view(len(train_data), -1)
            net.train()
            for step in tqdm(range(n_iter), desc="online training"):
                k = random.randint(0, len(data) - 1)
                p = net(data[k].view(1, 784))
                loss = -torch.log(p[0, train_label[k]])
                loss.backward()
                for param in net.parameters():
                    param.data -= lr * param.grad
                    param.grad.zero_()
        """),
    "no_grad_update_grad_none_timed": code("""
        import time

        def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
            start = time.time()
            images = train_data.flatten(1)
            n = images.size(0)
            for t in range(n_iter):
                idx = torch.randint(n, (1,))
                out = net(images[idx])
                loss = F.nll_loss(out.log(), train_label[idx])
                loss.backward()
                with torch.no_grad():
                    for p in net.parameters():
                        p -= lr * p.grad
                        p.grad = None
                if (t + 1) % 1000 == 0:
                    print(f"step {t + 1}/{n_iter}, loss {loss.item():.3f}, {time.time() - start:.1f}s")
            print("training took", time.time() - start, "seconds")
            return net
        """),
    "matplotlib_loss_curve": code("""
        import matplotlib.pyplot as plt

        def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
            train_data = train_data.reshape(train_data.shape[0], 784)
            optimizer = torch.optim.SGD(net.parameters(), lr=lr)
            losses = []
            for i in range(n_iter):
                idx = torch.randint(0, train_data.shape[0], (1,))
                x, y = train_data[idx], train_label[idx]
                optimizer.zero_grad()
                loss = F.nll_loss(torch.log(net(x)), y)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            fig, ax = plt.subplots(figsize=(6, 3))
            ax.plot(losses, alpha=0.3)
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.set_title("online training")
            fig.canvas.draw()
            plt.show()
            plt.close(fig)
            return net
        """),
    # a plot at import (the cell runs top to bottom in the notebook), shuffled epochs by randperm,
    # helpers defined in the cell, the SGD step by hand with sub_
    "plot_at_import_randperm_helpers": code("""
        import matplotlib.pyplot as plt

        plt.figure()
        plt.imshow(train_data[0], cmap="gray")
        plt.title("a training picture")
        plt.close()

        def get_sample(data, labels, order, step):
            i = order[step % len(order)]
            return data[i:i + 1], labels[i:i + 1]

        def sgd_step(net, lr):
            with torch.no_grad():
                for p in net.parameters():
                    p.sub_(lr * p.grad)
                    p.grad.zero_()

        def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
            data = train_data.reshape(len(train_data), 28 * 28)
            order = torch.randperm(len(data))
            for step in range(n_iter):
                if step > 0 and step % len(data) == 0:
                    order = torch.randperm(len(data))
                x, y = get_sample(data, train_label, order, step)
                p = net(x)
                loss = -torch.log(p[torch.arange(1), y]).mean()
                loss.backward()
                sgd_step(net, lr)
            return net
        """),
    "dataloader_batch_of_one": code("""
        from torch.utils.data import DataLoader, TensorDataset

        def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
            dataset = TensorDataset(train_data.reshape(-1, 784), train_label)
            loader = DataLoader(dataset, batch_size=1, shuffle=True)
            optimizer = torch.optim.SGD(net.parameters(), lr=lr)
            step = 0
            while step < n_iter:
                for x, y in loader:
                    optimizer.zero_grad()
                    loss = F.nll_loss(torch.log(net(x)), y)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    if step == n_iter:
                        break
            return net
        """),
    "gather_net_zero_grad_momentum_0": code("""
        def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
            N = train_data.shape[0]
            x_all = train_data.view(N, -1)
            opt = torch.optim.SGD(params=net.parameters(), lr=lr, momentum=0)
            for _ in range(n_iter):
                i = torch.randint(high=N, size=(1,)).item()
                x = x_all[i].view(1, -1)
                y = train_label[i].view(1, 1)
                net.zero_grad()
                logp = torch.log(net(x))
                loss = -logp.gather(1, y).mean()
                loss.backward()
                opt.step()
        """),
    "numpy_choice_one_hot_loss": code("""
        import numpy as np

        def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
            pictures = train_data.reshape(len(train_data), -1)
            optimizer = torch.optim.SGD(net.parameters(), lr)
            for step in range(n_iter):
                i = int(np.random.choice(len(pictures)))
                p = net(pictures[i:i + 1])
                target = F.one_hot(train_label[i:i + 1], num_classes=p.shape[1]).float()
                loss = -(target * torch.log(p)).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            return net
        """),
    "print_at_import_optim_alias": code("""
        from torch import optim
        print("train_online is defined")

        def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
            n_samples = train_data.size(0)
            flat = train_data.reshape(n_samples, 28 * 28)
            sgd = optim.SGD(net.parameters(), lr=lr)
            loss_fn = torch.nn.NLLLoss()
            running = 0.0
            for i in range(1, n_iter + 1):
                j = torch.randint(0, n_samples, size=(1,), device=flat.device)
                sgd.zero_grad(set_to_none=True)
                log_prob = torch.log(net(flat[j]))
                loss = loss_fn(log_prob, train_label[j])
                loss.backward()
                sgd.step()
                running += loss.item()
                if i % 500 == 0:
                    print(f"iteration {i}: mean loss {running / 500:.4f}")
                    running = 0.0
            return net
        """),
}

# ---- template_update (lab05) -------------------------------------------------------------------
TEMPLATE_OK = {
    "logsumexp_einsum_indexing": code("""
        def template_update(W, X, labels, lr):
            S = torch.einsum("bd,cd->bc", X, W)
            P = torch.exp(S - torch.logsumexp(S, dim=1, keepdim=True))
            T = torch.zeros_like(P)
            T[torch.arange(len(labels)), labels] = 1
            return W + lr * torch.einsum("bc,bd->cd", T - P, X)
        """),
    "torch_softmax_one_hot_mm": code("""
        def template_update(W, X, labels, lr):
            P = torch.softmax(torch.mm(X, W.t()), dim=1)
            E = F.one_hot(labels, num_classes=W.shape[0]).float() - P
            return W + lr * torch.mm(E.t(), X)
        """),
    "max_values_scatter": code("""
        def template_update(W, X, labels, lr):
            scores = X @ W.T
            scores = scores - scores.max(dim=1, keepdim=True).values
            P = scores.exp() / scores.exp().sum(dim=1, keepdim=True)
            onehot = torch.zeros_like(P).scatter_(1, labels.unsqueeze(1), 1.0)
            E = onehot - P
            return W + lr * E.T @ X
        """),
    "no_grad_eye": code("""
        def template_update(W, X, labels, lr):
            with torch.no_grad():
                P = torch.softmax(X @ W.T, dim=-1)
                target = torch.eye(W.shape[0], device=W.device, dtype=W.dtype)[labels]
                W_new = W + lr * (target - P).T @ X
            return W_new
        """),
    # the lecture's sum of outer products, one picture at a time
    "loop_of_outer_products": code("""
        def template_update(W, X, labels, lr):
            W_new = W.clone()
            for b in range(X.shape[0]):
                p = torch.softmax(W @ X[b], dim=0)
                e = -p
                e[labels[b]] += 1
                W_new = W_new + lr * torch.outer(e, X[b])
            return W_new
        """),
    "helper_softmax_print": code("""
        def my_softmax(s):
            e = torch.exp(s - s.amax(dim=1, keepdim=True))
            return e / e.sum(dim=1, keepdim=True)

        def template_update(W, X, labels, lr):
            P = my_softmax(X @ W.T)
            E = F.one_hot(labels, W.size(0)).to(P.dtype) - P
            delta = E.T @ X
            print("update norm:", delta.norm().item())
            return W + lr * delta
        """),
    "clone_then_add_in_place_len_shape": code("""
        def template_update(W, X, labels, lr):
            S = X @ W.T
            P = torch.softmax(S, dim=len(S.shape) - 1)
            E = F.one_hot(labels, W.shape[0]).type_as(P) - P
            W_new = W.clone()
            W_new += lr * E.T @ X
            return W_new
        """),
}

# ---- train_minibatch (lab05) -------------------------------------------------------------------
MINIBATCH_OK = {
    "dataloader_shuffle": code("""
        from torch.utils.data import DataLoader, TensorDataset

        def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):
            loader = DataLoader(TensorDataset(train_data.reshape(-1, 784), train_label), batch_size=bs, shuffle=True)
            optimizer = torch.optim.SGD(net.parameters(), lr=lr)
            step = 0
            while step < n_iter:
                for x, y in loader:
                    optimizer.zero_grad()
                    loss = F.nll_loss(torch.log(net(x)), y)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    if step >= n_iter:
                        break
            return net
        """),
    "randperm_manual_update": code("""
        def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):
            X = train_data.reshape(len(train_data), -1)
            N = X.shape[0]
            for step in range(n_iter):
                idx = torch.randperm(N, device=X.device)[:bs]
                p = net(X[idx])
                loss = -torch.log(p[range(bs), train_label[idx]]).mean()
                loss.backward()
                for param in net.parameters():
                    param.data -= lr * param.grad
                    param.grad.zero_()
            return net
        """),
    "numpy_choice_tqdm_nllloss": code("""
        import numpy as np
        from tqdm import tqdm

        def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):
            data = train_data.view(train_data.shape[0], -1)
            criterion = nn.NLLLoss()
            optimizer = torch.optim.SGD(net.parameters(), lr=lr)
            for _ in tqdm(range(n_iter)):
                batch = np.random.choice(data.shape[0], bs)
                x, y = data[batch], train_label[batch]
                optimizer.zero_grad()
                loss = criterion(torch.log(net(x)), y)
                loss.backward()
                optimizer.step()
            return net
        """),
    "no_grad_grad_none_timed": code("""
        import time

        def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):
            t0 = time.perf_counter()
            x_all = train_data.flatten(1)
            n = len(x_all)
            for it in range(n_iter):
                ids = torch.randint(0, n, (bs,))
                loss = F.nll_loss(net(x_all[ids]).log(), train_label[ids])
                loss.backward()
                with torch.no_grad():
                    for w in net.parameters():
                        w -= lr * w.grad
                        w.grad = None
                if it % 1000 == 0:
                    print(f"iteration {it}: loss {loss.item():.3f} ({time.perf_counter() - t0:.1f} s)")
            print(f"done in {time.perf_counter() - t0:.1f} s")
        """),
    "matplotlib_tqdm_auto": code("""
        import matplotlib.pyplot as plt
        from tqdm.auto import tqdm

        def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):
            train_data = train_data.reshape(-1, 28 * 28)
            optimizer = torch.optim.SGD(net.parameters(), lr=lr)
            history = []
            for step in tqdm(range(n_iter)):
                indices = torch.randint(0, len(train_data), (bs,), device=train_data.device)
                optimizer.zero_grad()
                p = net(train_data[indices])
                loss = F.nll_loss(torch.log(p), train_label[indices])
                loss.backward()
                optimizer.step()
                history.append(loss.item())
            plt.figure(figsize=(8, 4))
            plt.plot(history)
            plt.xlabel("iteration")
            plt.ylabel("mean loss of the mini-batch")
            plt.gcf().canvas.draw()
            plt.close()
            return net
        """),
    "helpers_net_train_returns_none": code("""
        def get_batch(data, labels, bs):
            idx = torch.randint(0, data.shape[0], (bs,), device=data.device)
            return data[idx], labels[idx]

        def nll(p, y):
            return -torch.log(p.gather(1, y.view(-1, 1))).mean()

        def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):
            net.train()
            flat = train_data.view(len(train_data), 784)
            opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.0, weight_decay=0.0)
            for _ in range(n_iter):
                x, y = get_batch(flat, train_label, bs)
                opt.zero_grad()
                nll(net(x), y).backward()
                opt.step()
        """),
    "numpy_randint_print_at_import": code("""
        import numpy as np
        print("mini-batch trainer ready")

        def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):
            images = train_data.reshape(-1, 784)
            optimizer = torch.optim.SGD(net.parameters(), lr=lr)
            for it in range(n_iter):
                idx = torch.as_tensor(np.random.randint(0, images.shape[0], size=bs), device=images.device)
                log_p = torch.log(net(images[idx]))
                loss = -log_p[torch.arange(bs), train_label[idx]].sum() / bs
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            return net
        """),
}

# student id -> {unit: code}: lab01-03 students hold one variant of each cheap unit; lab04 and lab05
# students (the costly ones: the grader trains the recipe twice) one trainer variant each, two of
# the lab04 ones with lab03 too, so the recipe also trains their own one_layer_net.
_linear, _softmax, _net = list(LINEAR_OK.items()), list(SOFTMAX_OK.items()), list(NET_OK.items())
CORRECT: dict[str, dict[str, str]] = {}
for _i in range(4):
    CORRECT[f"ok_lab01_03_{_linear[_i][0]}__{_softmax[_i][0]}__{_net[_i][0]}"] = {
        "Linear": _linear[_i][1], "softmax": _softmax[_i][1], "one_layer_net": _net[_i][1]}
CORRECT[f"ok_softmax_{_softmax[4][0]}"] = {"softmax": _softmax[4][1]}
for _i, (_name, _code) in enumerate(ONLINE_OK.items()):
    if _i in (0, 2):
        _extra = _net[4 + _i // 2]
        CORRECT[f"ok_online_{_name}__{_extra[0]}"] = {"train_online": _code, "one_layer_net": _extra[1]}
    else:
        CORRECT[f"ok_online_{_name}"] = {"train_online": _code}
for (_tname, _tcode), (_mname, _mcode) in zip(TEMPLATE_OK.items(), MINIBATCH_OK.items()):
    CORRECT[f"ok_lab05_{_mname}__{_tname}"] = {"template_update": _tcode, "train_minibatch": _mcode}
# The variants of the cheap units the students above leave over: a student each.
for _unit, _variants, _used in (("Linear", _linear, 4), ("softmax", _softmax, 5), ("one_layer_net", _net, 6)):
    for _name, _code in _variants[_used:]:
        CORRECT[f"ok_{_unit}_{_name}"] = {_unit: _code}

# ================================================================================================
# Wrong variants: student id -> (unit, code); each student holds only that unit's lab
# ================================================================================================

ONLINE_REFERENCE_LOOP = """
def train_online(net, train_data, train_label, lr=0.01, n_iter=5000):
    data = train_data.reshape(len(train_data), -1)
    n = data.shape[0]
    optimizer = OPTIMIZER
    for step in range(STEPS):
        idx = INDEX
        x = data[idx].view(1, -1)
        label = LABEL
        ZERO
        p = net(x)
        loss = F.nll_loss(torch.log(p), label)
        loss.backward()
        optimizer.step()
    return net
"""
MINIBATCH_REFERENCE_LOOP = """
def train_minibatch(net, train_data, train_label, lr=0.01, bs=200, n_iter=5000):
    data = train_data.reshape(len(train_data), -1)
    n = data.shape[0]
    optimizer = OPTIMIZER
    for step in range(n_iter):
        indices = INDEX
        x = data[indices]
        labels = LABEL
        ZERO
        p = net(x)
        loss = LOSS
        loss.backward()
        optimizer.step()
    return net
"""


def online(**changes) -> str:
    """A train_online written like the reference, with the parts named changed."""
    parts = {"OPTIMIZER": "torch.optim.SGD(net.parameters(), lr=lr)", "STEPS": "n_iter",
             "INDEX": "torch.randint(0, n, (1,)).item()", "LABEL": "train_label[idx].view(1)",
             "ZERO": "optimizer.zero_grad()", **changes}
    source = ONLINE_REFERENCE_LOOP
    for key, value in parts.items():
        source = source.replace(key, value)
    return code(source)


def minibatch(**changes) -> str:
    """A train_minibatch written like the reference, with the parts named changed."""
    parts = {"OPTIMIZER": "torch.optim.SGD(net.parameters(), lr=lr)",
             "INDEX": "torch.randint(0, n, (bs,), device=data.device)", "LABEL": "train_label[indices]",
             "ZERO": "optimizer.zero_grad()", "LOSS": "F.nll_loss(torch.log(p), labels)", **changes}
    source = MINIBATCH_REFERENCE_LOOP
    for key, value in parts.items():
        source = source.replace(key, value)
    return code(source)


WRONG: dict[str, tuple[str, str]] = {
    # ---- Linear
    "bad_linear_randn_init": ("Linear", code("""
        class Linear(nn.Module):
            def __init__(self, in_features, out_features, bias=True):
                super().__init__()
                self.weight = nn.Parameter(torch.randn(out_features, in_features))
                if bias:
                    self.bias = nn.Parameter(torch.randn(out_features))
                else:
                    self.register_parameter("bias", None)

            def forward(self, x):
                y = x @ self.weight.T
                return y if self.bias is None else y + self.bias
        """)),
    "bad_linear_bound_of_out_features": ("Linear", code("""
        class Linear(nn.Module):
            def __init__(self, in_features, out_features, bias=True):
                super().__init__()
                bound = 1.0 / out_features ** 0.5
                self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
                if bias:
                    self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
                else:
                    self.register_parameter("bias", None)

            def forward(self, x):
                y = x @ self.weight.T
                return y if self.bias is None else y + self.bias
        """)),
    "bad_linear_ignores_bias_false": ("Linear", code("""
        class Linear(nn.Module):
            def __init__(self, in_features, out_features, bias=True):
                super().__init__()
                bound = 1.0 / in_features ** 0.5
                self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
                self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))

            def forward(self, x):
                return x @ self.weight.T + self.bias
        """)),
    "bad_linear_F_linear": ("Linear", code("""
        class Linear(nn.Module):
            def __init__(self, in_features, out_features, bias=True):
                super().__init__()
                bound = 1.0 / in_features ** 0.5
                self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
                if bias:
                    self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
                else:
                    self.register_parameter("bias", None)

            def forward(self, x):
                return F.linear(x, self.weight, self.bias)
        """)),
    "bad_linear_weight_transposed": ("Linear", code("""
        class Linear(nn.Module):
            def __init__(self, in_features, out_features, bias=True):
                super().__init__()
                bound = 1.0 / in_features ** 0.5
                self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-bound, bound))
                if bias:
                    self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
                else:
                    self.register_parameter("bias", None)

            def forward(self, x):
                y = x @ self.weight
                return y if self.bias is None else y + self.bias
        """)),
    # ---- softmax
    "bad_softmax_no_max_shift": ("softmax", code("""
        def softmax(x, dim=-1):
            e = torch.exp(x)
            return e / e.sum(dim=dim, keepdim=True)
        """)),
    "bad_softmax_always_last_dim": ("softmax", code("""
        def softmax(x, dim=-1):
            e = torch.exp(x - x.amax(dim=-1, keepdim=True))
            return e / e.sum(dim=-1, keepdim=True)
        """)),
    "bad_softmax_changes_x_in_place": ("softmax", code("""
        def softmax(x, dim=-1):
            x -= x.max(dim=dim, keepdim=True).values
            x.exp_()
            return x / x.sum(dim=dim, keepdim=True)
        """)),
    "bad_softmax_torch_own": ("softmax", code("""
        def softmax(x, dim=-1):
            return x.softmax(dim=dim)
        """)),
    "bad_softmax_no_keepdim": ("softmax", code("""
        def softmax(x, dim=-1):
            e = torch.exp(x - x.amax(dim=dim, keepdim=True))
            return e / e.sum(dim=dim)
        """)),
    "bad_softmax_imported_under_another_name": ("softmax", code("""
        from torch.nn.functional import softmax as _sm

        def softmax(x, dim=-1):
            return _sm(x, dim=dim)
        """)),
    # ---- one_layer_net
    "bad_net_without_softmax": ("one_layer_net", code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super().__init__()
                self.mylayer = nn.Linear(input_size, output_size, bias=True)

            def forward(self, x):
                return self.mylayer(x)
        """)),
    "bad_net_two_layers": ("one_layer_net", code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super().__init__()
                self.mylayer = nn.Linear(input_size, output_size, bias=True)
                self.output = nn.Linear(output_size, output_size, bias=True)

            def forward(self, x):
                return torch.softmax(self.output(torch.relu(self.mylayer(x))), dim=-1)
        """)),
    "bad_net_softmax_dim_0": ("one_layer_net", code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super().__init__()
                self.mylayer = nn.Linear(input_size, output_size, bias=True)

            def forward(self, x):
                return torch.softmax(self.mylayer(x), dim=0)
        """)),
    "bad_net_softmax_dim_1": ("one_layer_net", code("""
        class one_layer_net(nn.Module):
            def __init__(self, input_size, output_size):
                super().__init__()
                self.mylayer = nn.Linear(input_size, output_size, bias=True)

            def forward(self, x):
                return F.softmax(self.mylayer(x), dim=1)
        """)),
    # ---- train_online
    "bad_online_momentum": ("train_online", online(OPTIMIZER="torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)")),
    "bad_online_no_zero_grad": ("train_online", online(ZERO="pass")),
    "bad_online_randint_never_last": ("train_online", online(INDEX="torch.randint(0, n - 1, (1,)).item()")),
    "bad_online_sequential": ("train_online", online(INDEX="step % n")),
    "bad_online_fixed_lr": ("train_online", online(OPTIMIZER="torch.optim.SGD(net.parameters(), lr=0.01)")),
    "bad_online_adam": ("train_online", online(OPTIMIZER="torch.optim.Adam(net.parameters(), lr=lr)")),
    "bad_online_one_step_short": ("train_online", online(STEPS="1, n_iter")),
    "bad_online_labels_misaligned": ("train_online",
                                     online(LABEL="train_label[torch.randint(0, n, (1,))].view(1)")),
    # ---- template_update
    "bad_template_update_autograd": ("template_update", code("""
        def template_update(W, X, labels, lr):
            with torch.enable_grad():
                Wg = W.detach().clone().requires_grad_(True)
                loss = F.cross_entropy(X @ Wg.T, labels, reduction="sum")
                (g,) = torch.autograd.grad(loss, Wg)
            return W - lr * g
        """)),
    "bad_template_update_mean": ("template_update", code("""
        def template_update(W, X, labels, lr):
            P = torch.softmax(X @ W.T, dim=1)
            E = F.one_hot(labels, W.shape[0]).to(P.dtype) - P
            return W + lr * E.T @ X / X.shape[0]
        """)),
    # ---- train_minibatch
    "bad_minibatch_momentum": ("train_minibatch",
                               minibatch(OPTIMIZER="torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)")),
    "bad_minibatch_summed_loss": ("train_minibatch",
                                  minibatch(LOSS='F.nll_loss(torch.log(p), labels, reduction="sum")')),
    "bad_minibatch_ignores_bs": ("train_minibatch",
                                 minibatch(INDEX="torch.randint(0, n, (200,), device=data.device)")),
    "bad_minibatch_labels_misaligned": ("train_minibatch",
                                        minibatch(LABEL="train_label[torch.randint(0, n, (bs,), device=data.device)]")),
}


def labs_of(units) -> list[str]:
    return sorted({LAB[u] for u in units})


def held_units(units) -> list[str]:
    return [u for lab in labs_of(units) for u in UNITS_OF[lab]]


# ================================================================================================
# The run
# ================================================================================================

CLASS: list = []


def start_early(config) -> None:
    """The class, graded in the background as soon as the tests are collected (tests/conftest.py)."""
    if not CLASS:
        CLASS.append(in_background(grade_the_class))


def grade_the_class():
    root = Path(tempfile.mkdtemp(prefix="fairness-", dir=shared_root()))
    for student, replaced in CORRECT.items():
        write_student(root / "class", student, labs_of(replaced), replaced)
    for student, (unit, source) in WRONG.items():
        write_student(root / "class", student, [LAB[unit]], {unit: source})
    started = time.monotonic()
    grade_class(root / "class", root / "graded", "-j", "2")
    return finals_of(root / "graded"), root / "graded", time.monotonic() - started


@pytest.fixture(scope="module")
def graded(request):
    start_early(request.config)
    return CLASS[0].result()


def failures(graded, student: str, units=None) -> str:
    """The failing checks of `student` (of `units`), with their messages, from results.json."""
    _, out, _ = graded
    data = json.loads((Path(out) / student / "results.json").read_text())
    lines = [f"{t['name']}: {t['output']}" for t in data["tests"]
             if t["status"] == "failed" and (units is None or t["name"].split(":")[0] in units)]
    return f"{student} ({data.get('output', '')}):\n  " + "\n  ".join(lines or ["no failing check"])


# ================================================================================================
# The properties
# ================================================================================================

def test_the_class_is_big_enough():
    correct = sum(len(units) for units in CORRECT.values())
    tables = (LINEAR_OK, SOFTMAX_OK, NET_OK, ONLINE_OK, TEMPLATE_OK, MINIBATCH_OK)
    assert correct == sum(len(t) for t in tables), "every correct variant is some student's"
    assert correct >= 30 and len(WRONG) >= 25, (correct, len(WRONG))
    for unit in FULL:
        assert any(unit in units for units in CORRECT.values()), f"no correct variant of {unit}"
        assert any(u == unit for u, _ in WRONG.values()), f"no wrong variant of {unit}"


def test_every_student_gets_a_row(graded):
    results, out, _ = graded
    assert set(results) == set(CORRECT) | set(WRONG)
    rows = (Path(out) / "grades.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[0] for row in rows) == sorted(results)


@pytest.mark.parametrize("student", sorted(CORRECT))
def test_correct_variant_gets_full_marks(graded, student):
    result = graded[0][student]
    units = held_units(CORRECT[student])
    got = {u: result.units[u] for u in units}
    assert got == {u: FULL[u] for u in units}, f"{got}\n{failures(graded, student)}"


def status_of_held_labs(result, units) -> list[str]:
    """The parts of a row's status about the labs the student holds (the run grades every lab some
    student holds, so the others are reported as not submitted), reviews, and a missing sandbox."""
    held = labs_of(units)
    return [part for part in result.status.split("; ") if part != "ok" and
            not ("no notebook" in part and not any(f"{lab}_" in part for lab in held))]


@pytest.mark.parametrize("student", sorted(CORRECT))
def test_correct_variant_runs_every_check_without_review(graded, student):
    result = graded[0][student]
    assert not status_of_held_labs(result, CORRECT[student]), f"{result.status}\n{failures(graded, student)}"


@pytest.mark.parametrize("student", sorted(WRONG))
def test_wrong_variant_loses_points_on_its_own_unit_only(graded, student):
    unit, _ = WRONG[student]
    result = graded[0][student]
    assert result.units[unit] < FULL[unit], f"{unit} kept full marks ({result.units[unit]}) for {student}"
    others = {u: result.units[u] for u in held_units([unit]) if u != unit}
    assert others == {u: FULL[u] for u in others}, f"{others}\n{failures(graded, student)}"

