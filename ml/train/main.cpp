// SPDX-License-Identifier: BSD-3-Clause
// sparcl-train: data-parallel training of the autoencoder (gene expression)
// or the CNN (Fashion-MNIST) under mpirun, with the gradients summed by MPI
// or by sparcl (dense or top-k compressed). docs/trainer.md has the manual.
#include <mpi.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ml/data/datasets.hpp"
#include "ml/nn/blas.hpp"
#include "ml/train/saliency.hpp"
#include "ml/train/trainer.hpp"
#include "ml/train/workloads.hpp"
#include "sparcl/sparcl_mpi.h"

using namespace sparcl;

namespace {

const char* const kUsage =
    "usage: mpirun -np P sparcl-train --workload autoencoder|cnn [options]\n"
    "       sparcl-train compare-saliency A.csv B.csv\n"
    "\n"
    "communication:\n"
    "  --comm MODE          dense-mpi (MPI_Iallreduce), dense (sparcl), topk, topk-q (default dense-mpi)\n"
    "  --density F          topk/topk-q: fraction of each tensor sent (default 0.01)\n"
    "  --bits B             topk-q: QSGD bits per value, 4 or 8 (default 8)\n"
    "  --warmup-epochs N    topk/topk-q: exchange dense for the first N epochs (default 0)\n"
    "  --dense-below N      topk/topk-q: tensors of fewer entries go dense (default 262144)\n"
    "  --progress-thread    sparcl's background progress thread (MPI_THREAD_MULTIPLE)\n"
    "training:\n"
    "  --epochs N           (default 10)\n"
    "  --batch N            samples per rank per step (default: autoencoder 2, cnn 8)\n"
    "  --optimizer NAME     sgd or adam (default: autoencoder adam, cnn sgd)\n"
    "  --lr F               learning rate (default: adam 1e-3, sgd 0.02)\n"
    "  --momentum F         sgd momentum (default 0.9)\n"
    "  --lr-scaling MODE    none, or linear: the rate times the number of ranks (P ranks train on P times\n"
    "                       the batch; Goyal et al.) (default none)\n"
    "  --lr-warmup-epochs F linear scaling: reach the scaled rate linearly over the first F epochs (default 0)\n"
    "  --seed N             initialisation, shuffling, split (default 1)\n"
    "  --eval-every N       evaluate every N steps as well as at each epoch's end\n"
    "  --target-acc F       cnn: report the training time to this test accuracy (default 0.88)\n"
    "  --stop-at-target     cnn: stop when the target is reached\n"
    "  --max-seconds S      stop at the first evaluation after S s of training\n"
    "  --max-steps N        stop after N steps\n"
    "data and models:\n"
    "  --data PATH          autoencoder: file of tools/export-bladder (required);\n"
    "                       cnn: Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist)\n"
    "  --heldout N          autoencoder: held-out samples, stratified (default 12 of 57)\n"
    "  --hidden LIST        autoencoder hidden sizes down to the bottleneck (default 1024,64)\n"
    "  --train-samples N    cnn: first N training images (default all 60000)\n"
    "  --test-samples N     cnn: first N test images (default all 10000)\n"
    "  --channels LIST      cnn: channels of the conv blocks (default 16,32)\n"
    "  --fc N               cnn: width of the hidden fully connected layer (default 2048)\n"
    "output:\n"
    "  --csv FILE           log: one row per evaluation (rank 0)\n"
    "  --saliency FILE      autoencoder: bottleneck node saliency, cancer vs normal\n"
    "  --progress on|off|auto  progress bar on stderr (auto: when stderr is a terminal or under mpirun)\n"
    "  --quiet              only the summary line\n";

std::string fmt_real(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

[[noreturn]] void usage_error(const std::string& msg) {
  throw std::invalid_argument(msg + "\n(sparcl-train --help lists the options)");
}

size_t parse_count(const std::string& opt, const char* v) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v, &end, 10);
  if (errno || end == v || *end || v[0] == '-') usage_error(opt + ": '" + v + "' is not a non-negative integer");
  return size_t(x);
}

double parse_real(const std::string& opt, const char* v) {
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v, &end);
  if (errno || end == v || *end || !std::isfinite(x)) usage_error(opt + ": '" + v + "' is not a number");
  return x;
}

std::vector<size_t> parse_list(const std::string& opt, const std::string& v) {
  std::vector<size_t> out;
  size_t at = 0;
  while (at <= v.size()) {
    const size_t comma = v.find(',', at);
    const std::string item = v.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    const size_t x = parse_count(opt, item.c_str());
    if (x == 0) usage_error(opt + ": sizes must be at least 1");
    out.push_back(x);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

struct Options {
  std::string workload;
  train::TrainConfig train;
  bool batch_set = false, lr_set = false, optimizer_set = false;
  std::string data;
  size_t heldout = 12;
  std::vector<size_t> hidden{1024, 64};
  size_t train_samples = 0, test_samples = 0;
  std::vector<size_t> channels{16, 32};
  size_t fc = 2048;
  std::string saliency;
  std::string progress = "auto";
  bool quiet = false;
  bool progress_thread = false;
};

Options parse(int argc, char** argv) {
  Options o;
  o.train.epochs = 10;
  o.train.target_accuracy = 0.88;
  for (int i = 1; i < argc; ++i) {
    // --opt=value and --opt value alike.
    std::string a = argv[i], inline_value;
    const size_t eq = a.find('=');
    const bool has_inline = a.rfind("--", 0) == 0 && eq != std::string::npos;
    if (has_inline) {
      inline_value = a.substr(eq + 1);
      a.resize(eq);
    }
    bool value_taken = false;
    auto value = [&]() -> const char* {
      value_taken = true;
      if (has_inline) return inline_value.c_str();
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--workload") o.workload = value();
    else if (a == "--comm") o.train.exchange.mode = train::comm_mode(value());
    else if (a == "--density") o.train.exchange.density = parse_real(a, value());
    else if (a == "--bits") o.train.exchange.bits = int(parse_count(a, value()));
    else if (a == "--warmup-epochs") o.train.warmup_epochs = parse_count(a, value());
    else if (a == "--dense-below") o.train.exchange.dense_below = parse_count(a, value());
    else if (a == "--progress-thread") o.progress_thread = true;
    else if (a == "--epochs") o.train.epochs = parse_count(a, value());
    else if (a == "--batch") { o.train.batch = parse_count(a, value()); o.batch_set = true; }
    else if (a == "--optimizer") { o.train.optimizer.kind = nn::optimizer_kind(value()); o.optimizer_set = true; }
    else if (a == "--lr") { o.train.optimizer.lr = float(parse_real(a, value())); o.lr_set = true; }
    else if (a == "--momentum") o.train.optimizer.momentum = float(parse_real(a, value()));
    else if (a == "--lr-scaling") {
      const std::string v = value();
      if (v != "none" && v != "linear") usage_error("--lr-scaling must be none or linear, not '" + v + "'");
      o.train.lr_linear_scaling = v == "linear";
    }
    else if (a == "--lr-warmup-epochs") o.train.lr_warmup_epochs = parse_real(a, value());
    else if (a == "--seed") o.train.seed = parse_count(a, value());
    else if (a == "--eval-every") o.train.eval_every = parse_count(a, value());
    else if (a == "--target-acc") o.train.target_accuracy = parse_real(a, value());
    else if (a == "--stop-at-target") o.train.stop_at_target = true;
    else if (a == "--max-seconds") o.train.max_seconds = parse_real(a, value());
    else if (a == "--max-steps") o.train.max_steps = parse_count(a, value());
    else if (a == "--data") o.data = value();
    else if (a == "--heldout") o.heldout = parse_count(a, value());
    else if (a == "--hidden") o.hidden = parse_list(a, value());
    else if (a == "--train-samples") o.train_samples = parse_count(a, value());
    else if (a == "--test-samples") o.test_samples = parse_count(a, value());
    else if (a == "--channels") o.channels = parse_list(a, value());
    else if (a == "--fc") o.fc = parse_count(a, value());
    else if (a == "--csv") o.train.csv_path = value();
    else if (a == "--saliency") o.saliency = value();
    else if (a == "--progress") o.progress = value();
    else if (a == "--quiet") o.quiet = true;
    else usage_error("unknown option '" + a + "'");
    if (has_inline && !value_taken) usage_error(a + " takes no value");
  }
  if (o.workload != "autoencoder" && o.workload != "cnn")
    usage_error(o.workload.empty() ? "--workload is required (autoencoder or cnn)"
                                   : "--workload must be autoencoder or cnn, not '" + o.workload + "'");
  if (o.train.epochs == 0) usage_error("--epochs must be at least 1");
  if (o.progress != "on" && o.progress != "off" && o.progress != "auto")
    usage_error("--progress must be on, off or auto");
  if (!(o.train.target_accuracy >= 0 && o.train.target_accuracy <= 1)) usage_error("--target-acc must lie in [0, 1]");
  const bool ae = o.workload == "autoencoder";
  if (!o.batch_set) o.train.batch = ae ? 2 : 8;
  if (o.train.batch == 0) usage_error("--batch must be at least 1");
  if (!o.optimizer_set) o.train.optimizer.kind = ae ? nn::OptimizerConfig::Kind::Adam : nn::OptimizerConfig::Kind::Sgd;
  if (!o.lr_set) o.train.optimizer.lr = o.train.optimizer.kind == nn::OptimizerConfig::Kind::Adam ? 1e-3f : 0.02f;
  if (ae && o.data.empty()) usage_error("--workload autoencoder needs --data FILE (made by tools/export-bladder)");
  if (!ae && o.data.empty()) o.data = data::kFashionMnistDir;
  if (!ae && !o.saliency.empty()) usage_error("--saliency is for the autoencoder");
  // Everything that can be checked without the data is checked here, before
  // anything is loaded (the exchange and the trainer check again).
  const auto mode = o.train.exchange.mode;
  if (!(o.train.exchange.density > 0.0 && o.train.exchange.density <= 1.0))
    usage_error("--density must lie in (0, 1] (a fraction: 0.01 keeps 1%), not " + fmt_real(o.train.exchange.density));
  if (mode == train::CommMode::TopKQ && o.train.exchange.bits != 4 && o.train.exchange.bits != 8)
    usage_error("--bits must be 4 or 8, not " + std::to_string(o.train.exchange.bits));
  if (!(o.train.optimizer.lr > 0)) usage_error("--lr must be positive");
  if (!(o.train.lr_warmup_epochs >= 0)) usage_error("--lr-warmup-epochs must not be negative");
  if (o.train.lr_warmup_epochs > 0 && !o.train.lr_linear_scaling)
    usage_error("--lr-warmup-epochs ramps up to the scaled rate: it needs --lr-scaling linear");
  if (!(o.train.optimizer.momentum >= 0 && o.train.optimizer.momentum < 1)) usage_error("--momentum must lie in [0, 1)");
  if (o.train.max_seconds < 0) usage_error("--max-seconds must not be negative");
  if (ae && o.heldout == 0) usage_error("--heldout must be at least 1");
  if (access(o.data.c_str(), R_OK) != 0)
    usage_error("--data " + o.data + ": cannot open: " + std::strerror(errno) +
                (ae ? " (make it with tools/export-bladder)" : " (Debian package dataset-fashion-mnist)"));
  for (const std::string* out : {&o.train.csv_path, &o.saliency})
    if (!out->empty()) {
      const size_t slash = out->rfind('/');
      const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : out->substr(0, slash);
      if (access(dir.c_str(), W_OK) != 0)
        usage_error(*out + ": cannot write into " + dir + ": " + std::strerror(errno));
    }
  o.train.workload = o.workload;
  o.train.eval_train = ae;
  o.train.verbose = !o.quiet;
  if (o.progress == "off" || o.quiet)
    o.train.progress = false;
  else if (o.progress == "auto")
    o.train.progress = isatty(2) || std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
  return o;
}

data::Samples subset(const data::Samples& s, const std::vector<size_t>& which) {
  data::Samples out;
  out.count = which.size();
  out.channels = s.channels;
  out.height = s.height;
  out.width = s.width;
  for (size_t i : which) {
    out.values.insert(out.values.end(), s.sample(i), s.sample(i) + s.sample_size());
    if (!s.labels.empty()) out.labels.push_back(s.labels[i]);
  }
  return out;
}

// Mean epoch time over the epochs that show the steady state: from epoch 2
// on (the first pays for first touches of the buffers and connection setup),
// and in a compressed run only the compressed epochs (not the dense
// warm-up). tools/plot --train applies the same rule.
struct EpochTimes {
  double mean_s = 0, comm_share = 0;
  size_t counted = 0;
};

EpochTimes epoch_times(const std::vector<train::LogRow>& log) {
  struct Epoch {
    double time = 0, comm = 0;
    bool compressed = false;
  };
  std::vector<Epoch> epochs(log.back().epoch + 1);
  bool any_compressed = false;
  for (const train::LogRow& r : log) {
    epochs[r.epoch].time += r.interval_s;
    epochs[r.epoch].comm += r.comm_s;
    epochs[r.epoch].compressed = r.compressed;
    any_compressed |= r.compressed;
  }
  EpochTimes et;
  double time = 0, comm = 0;
  for (int pass = 0; pass < 2 && et.counted == 0; ++pass)  // pass 1: everything, if nothing qualified
    for (size_t e = 1; e < epochs.size(); ++e) {
      if (pass == 0 && ((e == 1 && epochs.size() > 2) || (any_compressed && !epochs[e].compressed))) continue;
      time += epochs[e].time;
      comm += epochs[e].comm;
      ++et.counted;
    }
  et.mean_s = time / double(et.counted);
  et.comm_share = time > 0 ? comm / time : 0;
  return et;
}

int compare_saliency(const std::string& a, const std::string& b) {
  const auto sa = train::read_saliency_csv(a), sb = train::read_saliency_csv(b);
  if (sa.size() != sb.size()) throw std::runtime_error(a + " and " + b + " rank different numbers of nodes");
  std::vector<double> va, vb;
  for (const auto& n : sa) va.push_back(n.saliency);
  for (const auto& n : sb) vb.push_back(n.saliency);
  const size_t k = std::min<size_t>(10, sa.size());
  std::printf("saliency agreement over %zu nodes: Spearman rho %.3f, top-%zu overlap %zu/%zu\n", sa.size(),
              train::spearman(va, vb), k, train::top_overlap(sa, sb, k), k);
  return 0;
}

int run(int argc, char** argv) {
  Options o = parse(argc, argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  nn::blas_use_one_thread();
  const bool ae = o.workload == "autoencoder";

  // Data: every rank reads the files (the same split, from the same seed).
  data::Samples train_set, test_set;
  data::Expression expression;
  std::vector<size_t> train_idx, held_idx;
  if (ae) {
    expression = data::load_expression(o.data);
    data::split_stratified(expression.samples.labels, o.heldout, o.train.seed, &train_idx, &held_idx);
    // Per-gene z-scores from the training samples only; 0.1 (log2 units) floors the sd.
    data::standardize_features(expression.samples, train_idx, 0.1f);
    train_set = subset(expression.samples, train_idx);
    test_set = subset(expression.samples, held_idx);
  } else {
    train_set = data::load_fashion_mnist(o.data, true, o.train_samples);
    test_set = data::load_fashion_mnist(o.data, false, o.test_samples);
  }

  std::unique_ptr<nn::Sequential> model =
      ae ? train::make_autoencoder(train_set.sample_size(), o.hidden)
         : train::make_cnn(nn::Shape{train_set.channels, train_set.height, train_set.width}, o.channels, o.fc, 10);
  // Evaluation runs in chunks of the model's batch: allow larger ones than training's.
  model->setup(std::max<size_t>(o.train.batch, ae ? 16 : 64), o.train.seed);

  sparcl_config_t cfg = SPARCL_CONFIG_INIT;
  cfg.progress_thread = o.progress_thread ? 1 : 0;
  sparcl_comm_t comm = nullptr;
  const sparcl_status_t st = sparcl_comm_create_mpi(MPI_COMM_WORLD, &cfg, &comm);
  if (st != SPARCL_SUCCESS)
    throw std::runtime_error(std::string("sparcl_comm_create_mpi: ") + sparcl_strerror(st) + ": " +
                             sparcl_comm_last_error(nullptr));
  const auto& ex = o.train.exchange;
  const bool compressed = ex.mode == train::CommMode::TopK || ex.mode == train::CommMode::TopKQ;
  if (rank == 0 && !o.quiet) {
    std::printf("sparcl-train: %s on %d ranks, %zu training and %zu %s samples, comm %s", o.workload.c_str(), ranks,
                train_set.count, test_set.count, ae ? "held-out" : "test", train::comm_mode_name(ex.mode));
    if (compressed) std::printf(" (density %g%s, warm-up %zu epochs)", ex.density,
                                ex.mode == train::CommMode::TopKQ ? (ex.bits == 4 ? ", 4-bit values" : ", 8-bit values") : "",
                                o.train.warmup_epochs);
    std::string lr = fmt_real(o.train.optimizer.lr);
    if (o.train.lr_linear_scaling)
      lr += " x " + std::to_string(ranks) + " ranks = " + fmt_real(o.train.optimizer.lr * double(ranks)) +
            (o.train.lr_warmup_epochs > 0 ? " after " + fmt_real(o.train.lr_warmup_epochs) + " warm-up epochs" : "");
    std::printf("\n  %s, lr %s, batch %zu per rank (%zu global), %zu epochs\n%s",
                nn::optimizer_name(o.train.optimizer.kind), lr.c_str(), o.train.batch,
                o.train.batch * size_t(ranks), o.train.epochs, model->summary().c_str());
    std::fflush(stdout);
  }

  {
    train::Trainer trainer(*model, ae ? train::Task::Reconstruct : train::Task::Classify, train_set, test_set, o.train,
                           MPI_COMM_WORLD, comm);
    const auto& log = trainer.run();
    const EpochTimes et = epoch_times(log);
    if (rank == 0) {
      const train::LogRow& last = log.back();
      std::printf("summary: %s, comm %s", o.workload.c_str(), train::comm_mode_name(ex.mode));
      if (compressed) std::printf(" density %g", ex.density);
      if (ex.mode == train::CommMode::TopKQ) std::printf(" %d-bit", ex.bits);
      std::printf(", %d ranks, %zu epochs, %zu steps, %.1f s training; epoch time %.3f s (mean of %zu), comm %.0f%%",
                  ranks, last.epoch, last.step, last.wall_s, et.mean_s, et.counted, 100 * et.comm_share);
      if (ae)
        std::printf("; train MSE %.5f, held-out MSE %.5f\n", last.train_eval.loss, last.test.loss);
      else if (trainer.time_to_target() >= 0)
        std::printf("; test accuracy %.2f%%, %.0f%% reached after %.1f s\n", 100 * last.test.accuracy,
                    100 * o.train.target_accuracy, trainer.time_to_target());
      else
        std::printf("; test accuracy %.2f%%, %.0f%% not reached\n", 100 * last.test.accuracy,
                    100 * o.train.target_accuracy);
      std::fflush(stdout);
    }
    if (ae && !o.saliency.empty() && rank == 0) {
      // Bottleneck activations of every sample (training and held-out), cancer against normal.
      const size_t b = train::bottleneck_layer(*model), nodes = model->output_shape(b).size();
      const data::Samples& all = expression.samples;
      std::vector<float> act(all.count * nodes);
      for (size_t at = 0; at < all.count; at += model->max_batch()) {
        const size_t nb = std::min(model->max_batch(), all.count - at);
        model->forward(all.sample(at), nb);
        std::copy(model->activation(b), model->activation(b) + nb * nodes, act.begin() + std::ptrdiff_t(at * nodes));
      }
      const auto s = train::node_saliency(act.data(), all.count, nodes, all.labels, data::kCancer, data::kNormal);
      train::write_saliency_csv(o.saliency, s);
      if (!o.quiet) {
        std::printf("saliency: %s; most salient nodes:", o.saliency.c_str());
        for (size_t r = 1; r <= std::min<size_t>(5, nodes); ++r)
          for (const auto& n : s)
            if (n.rank == r) std::printf(" %zu (%.2f)", n.node, n.saliency);
        std::printf("\n");
      }
    }
  }
  sparcl_comm_free(comm);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help")) {
      std::fputs(kUsage, stdout);
      return 0;
    }
  if (argc >= 2 && !std::strcmp(argv[1], "compare-saliency")) {
    if (argc != 4) {
      std::fputs("usage: sparcl-train compare-saliency A.csv B.csv\n", stderr);
      return 2;
    }
    try {
      return compare_saliency(argv[2], argv[3]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sparcl-train: %s\n", e.what());
      return 1;
    }
  }
  bool threads = false;
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--progress-thread")) threads = true;
  int provided = 0;
  MPI_Init_thread(&argc, &argv, threads ? MPI_THREAD_MULTIPLE : MPI_THREAD_SINGLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int rc = 0;
  try {
    rc = run(argc, argv);
  } catch (const std::invalid_argument& e) {
    if (rank == 0) std::fprintf(stderr, "sparcl-train: %s\n", e.what());
    rc = 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sparcl-train: rank %d: %s\n", rank, e.what());
    rc = 1;
  }
  if (rc == 1) MPI_Abort(MPI_COMM_WORLD, 1);  // a rank may be stuck in a collective
  MPI_Finalize();
  return rc;
}
