// The optimizer's multi-tensor kernels, which tch does not bind (ops that take
// or return lists of tensors): torch.optim.AdamW(fused=True) and the foreach
// norm of torch.nn.utils.clip_grad_norm_. A tensor here is tch's handle, an
// `at::Tensor*`. Each function returns NULL, or an error message the caller
// frees with `bertfit_free_error`.

#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

std::vector<at::Tensor> list(at::Tensor** tensors, int64_t n) {
    std::vector<at::Tensor> out;
    out.reserve(n);
    for (int64_t i = 0; i < n; ++i) out.push_back(*tensors[i]);
    return out;
}

char* error(const char* what) { return strdup(what); }

}  // namespace

extern "C" {

void bertfit_free_error(char* message) { std::free(message); }

// torch.nn.utils.clip_grad_norm_(foreach=True)'s total norm:
// linalg_vector_norm(stack(_foreach_norm(grads, 2))), as a new f32 scalar
// tensor written to *out on the gradients' device.
char* bertfit_foreach_norm(at::Tensor** grads, int64_t n, at::Tensor** out) {
    try {
        auto norms = at::_foreach_norm(list(grads, n), 2);
        *out = new at::Tensor(at::linalg_vector_norm(at::stack(norms), 2));
        return nullptr;
    } catch (const std::exception& e) {
        return error(e.what());
    }
}

// One step of torch.optim.AdamW(fused=True) on one parameter group, in place:
// the gradients are first multiplied by `grad_scale` (global-norm clipping;
// 1 leaves them as they are) and by the scalar tensor `grad_scale_tensor`
// when it is not NULL (clip_grad_norm_(foreach=True)'s coefficient, left on
// the device, so nothing waits for it), then `_fused_adamw_` updates the parameters and
// both moments at step `step` (1 on the first update; bias corrections
// 1 - beta^step), as torch.optim.AdamW's `_fused_adamw` passes them.
char* bertfit_fused_adamw(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs, int64_t n,
                          double lr, double beta1, double beta2, double weight_decay, double eps, double step,
                          double grad_scale, at::Tensor* grad_scale_tensor) {
    try {
        if (n == 0) return nullptr;
        auto grad_list = list(grads, n);
        if (grad_scale != 1.0) at::_foreach_mul_(grad_list, grad_scale);
        if (grad_scale_tensor != nullptr) at::_foreach_mul_(grad_list, grad_scale_tensor->to(grad_list[0].device()));
        // torch keeps one f32 step tensor per parameter on its device; every
        // parameter of a group is at the same step, so one tensor serves all.
        auto state_step = at::full({}, step, params[0]->options().dtype(at::kFloat));
        std::vector<at::Tensor> steps(n, state_step);
        at::_fused_adamw_(list(params, n), grad_list, list(exp_avgs, n), list(exp_avg_sqs, n), {}, steps, lr, beta1, beta2,
                          weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
        return nullptr;
    } catch (const std::exception& e) {
        return error(e.what());
    }
}

}  // extern "C"
