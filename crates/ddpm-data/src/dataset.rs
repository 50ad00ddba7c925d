//! In-memory data sets: 8-bit images (or fewer levels) and 2-D points.

/// Images stored as bytes, N x C x H x W.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pub n: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
    /// The largest pixel value: 255 for 8-bit data, 16 for the digits.
    pub max_value: u8,
    pub labels: Option<Vec<u32>>,
    pub num_classes: usize,
    pub name: String,
}

impl ImageSet {
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Image `i`'s bytes.
    pub fn image(&self, i: usize) -> &[u8] {
        let l = self.image_len();
        &self.pixels[i * l..(i + 1) * l]
    }

    /// Image `i` scaled to [-1, 1]: x / (max/2) - 1 (x/127.5 - 1 for 8-bit data, as in the paper).
    pub fn image_f32(&self, i: usize) -> Vec<f32> {
        let half = self.max_value as f32 / 2.0;
        self.image(i).iter().map(|&p| scale(p, half)).collect()
    }
}

#[inline]
pub(crate) fn scale(p: u8, half: f32) -> f32 {
    p as f32 / half - 1.0
}

/// 2-D points, N x 2.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSet {
    pub n: usize,
    pub dim: usize,
    pub points: Vec<f32>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    Images(ImageSet),
    Points(PointSet),
}

impl Dataset {
    pub fn len(&self) -> usize {
        match self {
            Self::Images(s) => s.n,
            Self::Points(s) => s.n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One sample's shape: [C, H, W] or [dim].
    pub fn sample_shape(&self) -> Vec<usize> {
        match self {
            Self::Images(s) => vec![s.channels, s.height, s.width],
            Self::Points(s) => vec![s.dim],
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            Self::Images(s) => s.num_classes,
            Self::Points(_) => 0,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Images(s) => &s.name,
            Self::Points(s) => &s.name,
        }
    }

    /// Sample `i` as floats (images scaled to [-1, 1]).
    pub fn sample_f32(&self, i: usize) -> Vec<f32> {
        match self {
            Self::Images(s) => s.image_f32(i),
            Self::Points(s) => s.points[i * s.dim..(i + 1) * s.dim].to_vec(),
        }
    }

    /// Up to `max` 2-D points (for plots); empty for images.
    pub fn points_xy(&self, max: usize) -> Vec<[f32; 2]> {
        match self {
            Self::Points(s) if s.dim == 2 => {
                s.points.chunks(2).take(max).map(|c| [c[0], c[1]]).collect()
            }
            _ => Vec::new(),
        }
    }
}
