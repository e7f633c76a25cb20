/*
 * The CMSIS-NN peer of firmware/bench.sh: one LSTM step of input 3 and hidden 32 through CMSIS-NN's own
 * step functions, `arm_nn_lstm_step_s8` (int8 weights and activations, int16 gates) and
 * `arm_nn_lstm_step_f32`, on the same emulated core and in the same run as the engine's steps. Built only
 * with the firmware's `cmsis-nn` feature, against the CMSIS-NN checkout that `peers/fetch-cmsis-nn.sh`
 * makes (firmware/build.rs compiles both).
 *
 * The weights are seeded pseudo-random values; the quantization parameters follow TensorFlow Lite's
 * integer LSTM (int8 input and hidden state with scale 1/128, gates in Q3.12 before and Q0.15 after their
 * activation, cell state in Q4.11). Instruction counts of these kernels do not depend on the values except
 * through saturation, which the chosen scales keep rare; `peer_*_check` reports the outputs so the bench
 * can print them.
 */
#include <stdint.h>
#include <string.h>

#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"
#include "arm_nnfunctions_flt.h"
#include "arm_nnsupportfunctions_flt.h"

#define IN 3
#define H 32

static uint32_t seed = 0x2545f491u;

static uint32_t next_random(void)
{
    /* xorshift32 */
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    return seed;
}

/* A value in [-0.5, 0.5). */
static float random_weight(void) { return ((float)(next_random() >> 8) / 16777216.0f) - 0.5f; }

/* ---- int8 ---------------------------------------------------------------------------------------- */

static int8_t s8_input_weights[4][H * IN];
static int8_t s8_hidden_weights[4][H * H];
static int32_t s8_input_bias[4][H];
static int32_t s8_hidden_bias[4][H];
static int16_t s8_temp1[H];
static int16_t s8_temp2[H];
static int16_t s8_cell[H];
static int8_t s8_hidden[2][H];
static int s8_current;
static cmsis_nn_lstm_params s8_params;
static cmsis_nn_lstm_context s8_buffers;

/* TFLite-style multiplier (Q31 in [0.5, 1)) and shift (left shift if positive) for a positive real scale. */
static void quantize_multiplier(double scale, int32_t *multiplier, int32_t *shift)
{
    int exponent = 0;
    while (scale >= 1.0)
    {
        scale /= 2.0;
        exponent++;
    }
    while (scale < 0.5)
    {
        scale *= 2.0;
        exponent--;
    }
    *multiplier = (int32_t)(scale * 2147483648.0 + 0.5);
    *shift = exponent;
}

void peer_s8_init(void)
{
    /* Input and hidden in int8 with scale 1/128; weights in [-0.5, 0.5) with scale 0.5/127. */
    const double x_scale = 1.0 / 128.0;
    const double w_scale = 0.5 / 127.0;
    const double gate_scale = 1.0 / 4096.0; /* Q3.12 */
    cmsis_nn_lstm_gate *gates[4] = {&s8_params.forget_gate, &s8_params.input_gate, &s8_params.cell_gate,
                                    &s8_params.output_gate};
    int32_t multiplier, shift;
    quantize_multiplier(x_scale * w_scale / gate_scale, &multiplier, &shift);
    for (int g = 0; g < 4; g++)
    {
        for (int i = 0; i < H * IN; i++)
            s8_input_weights[g][i] = (int8_t)(random_weight() * 254.0f);
        for (int i = 0; i < H * H; i++)
            s8_hidden_weights[g][i] = (int8_t)(random_weight() * 254.0f);
        for (int i = 0; i < H; i++)
        {
            /* Zero-point offsets are 0, so the effective biases are the gate biases (input side only). */
            s8_input_bias[g][i] = (int32_t)(random_weight() * 0.2f / (float)(x_scale * w_scale));
            s8_hidden_bias[g][i] = 0;
        }
        gates[g]->input_multiplier = multiplier;
        gates[g]->input_shift = shift;
        gates[g]->input_weights = s8_input_weights[g];
        gates[g]->input_effective_bias = s8_input_bias[g];
        gates[g]->hidden_multiplier = multiplier;
        gates[g]->hidden_shift = shift;
        gates[g]->hidden_weights = s8_hidden_weights[g];
        gates[g]->hidden_effective_bias = s8_hidden_bias[g];
        gates[g]->bias = NULL;
        gates[g]->activation_type = g == 2 ? ARM_TANH : ARM_SIGMOID;
    }
    s8_params.time_major = 1;
    s8_params.batch_size = 1;
    s8_params.time_steps = 1;
    s8_params.input_size = IN;
    s8_params.hidden_size = H;
    s8_params.input_offset = 0;
    /* f (Q0.15) x c (Q4.11) -> Q4.11; i (Q0.15) x g (Q0.15) -> Q4.11; o (Q0.15) x tanh c (Q0.15) -> 1/128. */
    quantize_multiplier(1.0 / 32768.0, &s8_params.forget_to_cell_multiplier, &s8_params.forget_to_cell_shift);
    quantize_multiplier(2048.0 / 1073741824.0, &s8_params.input_to_cell_multiplier, &s8_params.input_to_cell_shift);
    quantize_multiplier(128.0 / 1073741824.0, &s8_params.output_multiplier, &s8_params.output_shift);
    s8_params.cell_clip = 32767;
    s8_params.cell_scale_power = -11;
    s8_params.output_offset = 0;
    s8_buffers.temp1 = s8_temp1;
    s8_buffers.temp2 = s8_temp2;
    s8_buffers.cell_state = s8_cell;
    s8_buffers.hidden_state = NULL;
    memset(s8_cell, 0, sizeof s8_cell);
    memset(s8_hidden, 0, sizeof s8_hidden);
    s8_current = 0;
}

/* One step: the hidden state alternates between two buffers, so nothing is copied between steps. */
int32_t peer_s8_step(const int8_t *x)
{
    const int next = 1 - s8_current;
    const arm_cmsis_nn_status status =
        arm_nn_lstm_step_s8(x, s8_hidden[s8_current], s8_hidden[next], &s8_params, &s8_buffers, 1);
    s8_current = next;
    return (int32_t)status;
}

const int8_t *peer_s8_hidden(void) { return s8_hidden[s8_current]; }

/* ---- f32 ----------------------------------------------------------------------------------------- */

/* Only on cores with an FPU: its 18 KiB of weights would not fit the micro:bit's 16 KiB of RAM. */
#if defined(__ARM_FP)

static float f32_input_weights[4][H * IN];
static float f32_hidden_weights[4][H * H];
static float f32_bias[4][H];
static float f32_temp1[H];
static float f32_temp2[H];
static float f32_cell[H];
static float f32_hidden[2][H];
static int f32_current;
static cmsis_nn_lstm_params_f32 f32_params;
static cmsis_nn_lstm_context_f32 f32_buffers;

void peer_f32_init(void)
{
    cmsis_nn_lstm_gate_f32 *gates[4] = {&f32_params.forget_gate, &f32_params.input_gate, &f32_params.cell_gate,
                                        &f32_params.output_gate};
    for (int g = 0; g < 4; g++)
    {
        for (int i = 0; i < H * IN; i++)
            f32_input_weights[g][i] = random_weight();
        for (int i = 0; i < H * H; i++)
            f32_hidden_weights[g][i] = random_weight();
        for (int i = 0; i < H; i++)
            f32_bias[g][i] = random_weight() * 0.2f;
        gates[g]->input_weights = f32_input_weights[g];
        gates[g]->hidden_weights = f32_hidden_weights[g];
        gates[g]->bias = f32_bias[g];
        gates[g]->activation_type = g == 2 ? ARM_NN_FLT_ACT_TANH : ARM_NN_FLT_ACT_SIGMOID;
    }
    f32_params.time_major = 1;
    f32_params.batch_size = 1;
    f32_params.time_steps = 1;
    f32_params.input_size = IN;
    f32_params.hidden_size = H;
    f32_params.cell_clip = 0.0f;
    f32_buffers.temp1 = f32_temp1;
    f32_buffers.temp2 = f32_temp2;
    f32_buffers.cell_state = f32_cell;
    memset(f32_cell, 0, sizeof f32_cell);
    memset(f32_hidden, 0, sizeof f32_hidden);
    f32_current = 0;
}

int32_t peer_f32_step(const float *x)
{
    const int next = 1 - f32_current;
    const arm_cmsis_nn_status status =
        arm_nn_lstm_step_f32(x, f32_hidden[f32_current], f32_hidden[next], &f32_params, &f32_buffers, 1);
    f32_current = next;
    return (int32_t)status;
}

const float *peer_f32_hidden(void) { return f32_hidden[f32_current]; }

#endif /* __ARM_FP */
