package io.lightmesh.mesh;

import com.google.protobuf.ByteString;
import io.lightmesh.engine.tensor.Tensor;
import io.lightmesh.proto.v1.ActivationDType;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Rows on the expert wire: fp32 carries the floats' bits, bf16 rounds each to nearest even (relative error <= 2^-8). */
class WireRowsTest {
    static final ActivationDType F32 = ActivationDType.ACTIVATION_DTYPE_F32, BF16 = ActivationDType.ACTIVATION_DTYPE_BF16;
    static final int H = 37; // odd: no row lands on a nicely aligned boundary

    static float[] randomRows(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] x = new float[n * H];
        for (int i = 0; i < x.length; i++) x[i] = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(-6, 6)));
        x[3] = 0f;
        x[4] = -0f;
        x[5] = Float.MIN_VALUE;
        return x;
    }

    @Test
    void f32RowsGoAndComeBackBitForBit() {
        float[] x = randomRows(6, 1);
        int[] rows = {4, 0, 5, 2};
        ByteString wire = WireRows.gather(x, rows, H, F32);
        assertEquals(rows.length * H * 4, wire.size());
        // the same bytes as the little-endian floats, as the proto says
        ByteBuffer le = wire.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(Float.floatToRawIntBits(x[4 * H + 7]), le.getInt(7 * 4));
        WireRows.Reader r = WireRows.reader(wire, F32);
        for (int i = 0; i < rows.length; i++) {
            float[] got = new float[H + 2];
            r.row(i, H, got, 2);
            float[] want = new float[H + 2];
            System.arraycopy(x, rows[i] * H, want, 2, H);
            assertArrayEquals(want, got);
        }
        float[] all = new float[6 * H];
        ByteString whole = WireRows.encode(x, 6 * H, F32);
        WireRows.reader(whole, ActivationDType.ACTIVATION_DTYPE_UNSPECIFIED).row(0, 6 * H, all, 0); // UNSPECIFIED reads as F32
        assertArrayEquals(x, all);
    }

    @Test
    void addRowAddsIntoTheOutput() {
        float[] x = randomRows(2, 2), out = randomRows(3, 3), want = out.clone();
        for (int c = 0; c < H; c++) want[2 * H + c] += x[H + c];
        WireRows.reader(WireRows.gather(x, new int[] {1}, H, F32), F32).addRow(0, H, out, 2 * H);
        assertArrayEquals(want, out);
    }

    @Test
    void bf16HalvesTheBytesAndRoundsToNearestEven() {
        float[] x = randomRows(5, 4);
        int[] rows = {0, 1, 2, 3, 4};
        ByteString wire = WireRows.gather(x, rows, H, BF16);
        assertEquals(5 * H * 2, wire.size());
        float[] back = new float[5 * H];
        WireRows.Reader r = WireRows.reader(wire, BF16);
        for (int i = 0; i < 5; i++) r.row(i, H, back, i * H);
        for (int i = 0; i < x.length; i++) {
            assertEquals(Tensor.bf16ToFloat(Tensor.floatToBf16(x[i])), back[i], 0f, "element " + i + " is torch's rounding of " + x[i]);
            float v = x[i];
            if (v != 0 && Math.abs(v) > 1e-30) {
                assertTrue(Math.abs(back[i] - v) <= Math.abs(v) * 0x1p-8, () -> "relative error over 2^-8 at " + v);
            }
        }
        float[] encoded = new float[5 * H];
        WireRows.reader(WireRows.encode(x, 5 * H, BF16), BF16).row(0, 5 * H, encoded, 0);
        assertArrayEquals(back, encoded, "gather and encode write the same bf16 bits");
        // ties go to even: 1 + 2^-8 lies halfway between two bf16 values and rounds down to 1
        float[] one = new float[1];
        WireRows.reader(WireRows.encode(new float[] {1f + 0x1p-8f}, 1, BF16), BF16).row(0, 1, one, 0);
        assertEquals(1f, one[0]);
    }

    @Test
    void onlyF32AndBf16AreSpoken() {
        assertEquals(F32, WireRows.normalize(ActivationDType.ACTIVATION_DTYPE_UNSPECIFIED));
        assertEquals(BF16, WireRows.normalize(BF16));
        assertThrows(IllegalArgumentException.class, () -> WireRows.normalize(ActivationDType.UNRECOGNIZED));
        assertEquals(2, WireRows.elementBytes(BF16));
        assertEquals(4, WireRows.elementBytes(ActivationDType.ACTIVATION_DTYPE_UNSPECIFIED));
    }
}
