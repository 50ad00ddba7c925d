//! In-memory data sets: 8-bit images (or fewer grey levels) and 2-D points, as plain buffers
//! with no tensor library; the [`Loader`](crate::Loader) turns them into f32 batches.

/// Images stored as bytes, N x C x H x W (each image CHW, rows top to bottom).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pub n: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
    /// The largest pixel value: 255 for 8-bit data, 16 for the digits.
    pub max_value: u8,
    /// Class of each image, in 0..num_classes, if the source has classes.
    pub labels: Option<Vec<u32>>,
    /// 0 for unlabeled data.
    pub num_classes: usize,
    pub name: String,
}

impl ImageSet {
    /// Bytes per image: C * H * W.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Image `i`'s bytes.
    pub fn image(&self, i: usize) -> &[u8] {
        let l = self.image_len();
        &self.pixels[i * l..(i + 1) * l]
    }

    /// Image `i` scaled to [-1, 1]: x / (max/2) - 1, so 0 -> -1 and max -> 1 (x/127.5 - 1 for
    /// 8-bit data, the scaling of Ho et al. 2020).
    pub fn image_f32(&self, i: usize) -> Vec<f32> {
        let half = self.max_value as f32 / 2.0;
        self.image(i).iter().map(|&p| scale(p, half)).collect()
    }
}

/// One pixel in [-1, 1]; `half` is max_value / 2.
#[inline]
pub(crate) fn scale(p: u8, half: f32) -> f32 {
    p as f32 / half - 1.0
}

/// Points, N x dim (dim = 2 for the toy sets), used as they are (no scaling).
#[derive(Debug, Clone, PartialEq)]
pub struct PointSet {
    pub n: usize,
    pub dim: usize,
    /// Row-major N x dim.
    pub points: Vec<f32>,
    pub name: String,
}

/// A loaded data set: images or points.
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    Images(ImageSet),
    Points(PointSet),
}

impl Dataset {
    /// Number of samples N.
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

    /// Number of classes; 0 for unlabeled images and for points.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn two_images() -> ImageSet {
        ImageSet {
            n: 2,
            channels: 1,
            height: 1,
            width: 3,
            pixels: vec![0, 128, 255, 1, 2, 3],
            max_value: 255,
            labels: Some(vec![4, 7]),
            num_classes: 10,
            name: "two".into(),
        }
    }

    #[test]
    fn eight_bit_scaling_is_the_papers() {
        let s = two_images();
        assert_eq!(s.image(1), &[1, 2, 3]);
        let x = s.image_f32(0);
        assert_eq!(x[0], -1.0);
        assert_eq!(x[1], 128.0 / 127.5 - 1.0);
        assert_eq!(x[2], 1.0);
    }

    #[test]
    fn shapes_and_classes() {
        let d = Dataset::Images(two_images());
        assert_eq!((d.len(), d.sample_shape(), d.num_classes()), (2, vec![1, 1, 3], 10));
        let p = Dataset::Points(PointSet {
            n: 3,
            dim: 2,
            points: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            name: "p".into(),
        });
        assert_eq!((p.len(), p.sample_shape(), p.num_classes()), (3, vec![2], 0));
        assert_eq!(p.sample_f32(1), vec![2.0, 3.0]);
        assert_eq!(p.points_xy(2), vec![[0.0, 1.0], [2.0, 3.0]]);
        assert!(d.points_xy(5).is_empty());
    }
}
